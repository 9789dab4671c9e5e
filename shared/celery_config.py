"""The one place for Celery settings, used by the worker app and the suggester's producer.

Recovery of long GPU runs does not rely on broker redelivery (Redis only emulates acks, via a
visibility timeout that would have to be both longer than the longest run and short): runs
heartbeat through the API and the suggester reschedules a run whose lease expired, with a new
attempt number. The broker settings below close the remaining holes for crashes and restarts.
"""

from __future__ import annotations

from typing import Any

from shared.settings import Settings

#: Longer than any training run, so Redis never hands a running task to a second worker.
VISIBILITY_TIMEOUT_S = 7 * 24 * 3600


def celery_settings(settings: Settings) -> dict[str, Any]:
    transport = {"visibility_timeout": VISIBILITY_TIMEOUT_S}
    return {
        "broker_url": settings.redis_url,
        "broker_transport_options": transport,
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": 1,
        "worker_max_tasks_per_child": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": True,
        "worker_hijack_root_logger": False,
        # No static route: a training task goes to its objective's queue
        # (`shared.names.train_queue`), named by the suggester's Publisher when it sends it.
    }
