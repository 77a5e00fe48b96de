"""How far apart a broker notifier's batches of hints go out.

A hint after a quiet spell goes out at once. After every batch the sender
(the Redis writer thread, or the I/O loop's pump) waits out a gap before it
looks at its buffer again, so the callers meanwhile only fill the buffer and
wake nobody; at the gap's end it sends what came, or goes idle when nothing
did (and the next hint goes at once again). Under sustained publishing, a
producer creating chain after chain, every gap ends with hints waiting: the
gap then doubles, up to ``most``, so a steady stream costs one send per
``most`` seconds (one script run or JetStream budget update, one thread
wake-up) instead of one per ``base``. The first idle moment brings it back to
``base``. A lone wake-up never waits; a hint inside a stream waits at most
``most``.
"""

from __future__ import annotations

__all__ = ["BatchSpacing"]


class BatchSpacing:
    """The current gap between the starts of two batches (seconds)."""

    __slots__ = ("base", "most", "current")

    def __init__(self, base: float, most: float) -> None:
        self.base = base
        self.most = max(base, most)
        self.current = base

    def batch(self, after_idle: bool) -> float:
        """A batch is taken now: the gap until the next may start. After an
        idle moment the base gap; else (hints came within the last gap: a
        stream) twice the last gap, up to ``most``."""
        self.current = self.base if after_idle else min(self.most, self.current * 2 or self.base)
        return self.current

    def idle(self) -> None:
        """A gap ended with nothing to send."""
        self.current = self.base
