"""The Django app of queuert (label ``queuert``): management commands only, no models."""

from __future__ import annotations

from django.apps import AppConfig


class QueuertConfig(AppConfig):
    name = "queuert.contrib.django"
    label = "queuert"
    verbose_name = "queuert"
