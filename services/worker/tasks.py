"""The one Celery task: a thin shell that decodes the message and calls `runner.train`."""

from __future__ import annotations

import socket

import redis
from celery import Celery
from celery import Task

from services.worker.objectives import Catalog
from services.worker.runner import train
from shared.api_client import ApiClient
from shared.messages import TrainRequest
from shared.names import TRAIN_TASK
from shared.settings import Settings


def register(app: Celery, settings: Settings, catalog: Catalog) -> None:
    """Register the training task on ``app`` alone (not shared with other apps in the
    process: each app's task trains with its own settings and objectives)."""

    @app.task(name=TRAIN_TASK, bind=True, shared=False)
    def train_task(self: Task, message: str) -> None:
        request = TrainRequest.from_json(message)
        api = ApiClient(settings.api_url, settings.resolved_service_token(), retry_for_s=300)
        results = redis.Redis.from_url(settings.redis_url)
        try:
            hostname = self.request.hostname or socket.gethostname()
            train(request, settings, api, results, hostname, catalog)
        finally:
            api.close()
            results.close()
