"""The worker's Celery app, built from settings (``multitune worker`` starts it)."""

from __future__ import annotations

from celery import Celery

from services.worker import tasks
from services.worker.objectives import Catalog
from shared.celery_config import celery_settings
from shared.settings import Settings


def create_celery(settings: Settings, catalog: Catalog | None = None) -> Celery:
    """The app whose training task trains the objectives of ``catalog`` (default: the
    built-ins and the installed entry points)."""
    app = Celery("multitune")
    app.conf.update(celery_settings(settings))
    tasks.register(app, settings, catalog or Catalog.discover())
    return app
