"""The worker's Celery app, built from settings (``multitune worker`` starts it)."""

from __future__ import annotations

from celery import Celery

from services.worker import tasks
from shared.celery_config import celery_settings
from shared.settings import Settings


def create_celery(settings: Settings) -> Celery:
    app = Celery("multitune")
    app.conf.update(celery_settings(settings))
    tasks.register(app, settings)
    return app
