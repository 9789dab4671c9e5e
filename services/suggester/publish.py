"""A producer-only Celery app: sends training tasks by name, never imports worker code."""

from __future__ import annotations

from celery import Celery
from kombu.exceptions import OperationalError

from shared.celery_config import celery_settings
from shared.messages import TrainRequest
from shared.names import TRAIN_TASK
from shared.names import train_queue
from shared.settings import Settings


class BrokerUnavailable(ConnectionError):
    """The broker (Redis) could not take a task. An `OSError`, like Redis's own connection
    errors, so the suggester's loop retries it: the run stays queued and unsent, and is sent
    once the broker is back (`managed.sent_key`)."""


class Publisher:
    def __init__(self, settings: Settings) -> None:
        self._app = Celery("multitune-suggester")
        self._app.conf.update(celery_settings(settings))

    def send(self, request: TrainRequest) -> None:
        """Enqueue one attempt on its objective's queue, which only workers that provide the
        objective consume; its task id names the run and attempt (visible in Flower).

        Raises:
            BrokerUnavailable: the broker is down (Celery's own error is no `OSError`).
        """
        try:
            self._app.send_task(
                TRAIN_TASK,
                args=[request.to_json()],
                queue=train_queue(request.objective),
                task_id=f"run-{request.run_id}-attempt-{request.attempt}",
            )
        except OperationalError as exc:
            raise BrokerUnavailable(f"cannot send run {request.run_id}: {exc}") from exc

    def close(self) -> None:
        self._app.close()
