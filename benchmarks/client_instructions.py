"""The client's single start in instructions (not in ``make bench``):
create-client's four single-start forms, one per process, counted by
valgrind's callgrind inside the timed calls only, so the figure does not
move with the machine's load (the server's work is another process and is
not counted)::

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=_operator_call \\
        --callgrind-out-file=/tmp/cg.out .venv/bin/python -m benchmarks.client_instructions \\
        --dsn DSN FORM N

FORM is ``raw`` (``SELECT * FROM queuert.start_chain(...)`` on a sync
``psycopg.Connection``, its JSON already serialised, as create-client's raw
form), ``client`` (``queuert.start_chain``), ``araw`` and ``aio`` (the same
on an ``AsyncConnection``; the event loop's own steps are counted for both).
The instructions per call are the total of ``callgrind_annotate /tmp/cg.out``
over N. Every call is an autocommit transaction of its own; 20 of each form
run first, uncounted (the statements prepared, caches warm). The database
must have the queuert schema (``queuert migrate``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import operator

import psycopg

from queuert import aio, client

from .create import START_ONE
from .common import DEFAULT_DSN

WARM = 20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dsn", default=DEFAULT_DSN)
    p.add_argument("form", choices=("raw", "client", "araw", "aio"))
    p.add_argument("n", type=int)
    a = p.parse_args()
    counted = operator.call  # callgrind counts inside _operator_call only
    texts = [json.dumps({"n": i}) for i in range(a.n)]
    values = [{"n": i} for i in range(a.n)]
    if a.form in ("raw", "client"):
        conn = psycopg.connect(a.dsn, autocommit=True)

        def raw(text: str) -> None:
            conn.execute(START_ONE, ("bench", text)).fetchall()

        def start(value: dict[str, int]) -> None:
            client.start_chain(conn, "bench", value)

        for i in range(WARM):
            raw(texts[i % a.n])
            start(values[i % a.n])
        if a.form == "raw":
            for text in texts:
                counted(raw, text)
        else:
            for value in values:
                counted(start, value)
        conn.close()
        return

    loop = asyncio.new_event_loop()
    aconn = loop.run_until_complete(psycopg.AsyncConnection.connect(a.dsn, autocommit=True))

    async def araw(text: str) -> None:
        cur = await aconn.execute(START_ONE, ("bench", text))
        await cur.fetchall()

    async def astart(value: dict[str, int]) -> None:
        await aio.start_chain(aconn, "bench", value)

    async def warm() -> None:
        for i in range(WARM):
            await araw(texts[i % a.n])
            await astart(values[i % a.n])

    async def body() -> None:
        if a.form == "araw":
            for text in texts:
                await araw(text)
        else:
            for value in values:
                await astart(value)

    loop.run_until_complete(warm())
    counted(loop.run_until_complete, body())
    loop.run_until_complete(aconn.close())
    loop.close()


if __name__ == "__main__":
    main()
