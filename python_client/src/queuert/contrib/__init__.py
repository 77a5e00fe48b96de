"""Integrations with web frameworks: ``queuert.contrib.django`` and
``queuert.contrib.starlette`` (FastAPI and Starlette). See docs/integrations.md."""
