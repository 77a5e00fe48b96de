"""queuert: durable job chains inside your own PostgreSQL."""

__version__ = "0.1.0"
