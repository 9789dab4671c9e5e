"""Names that cross process boundaries: Redis keys and streams, Celery queues and task names."""

from __future__ import annotations

#: Stream of experiment/suggestion/observation events written by the API's outbox relay.
EVENTS_STREAM = "multitune:events"
#: Stream of training results written by workers.
RESULTS_STREAM = "multitune:results"
#: Consumer group of the suggester on both streams.
SUGGESTER_GROUP = "suggester"

#: Celery queue for training tasks, and the one task name on it.
TRAIN_QUEUE = "train"
TRAIN_TASK = "multitune.train"


def pool_key(experiment_id: int | str) -> str:
    """Redis list of precomputed suggestions for one experiment (JSON entries, FIFO)."""
    return f"multitune:pool:{experiment_id}"


def pool_version_key(experiment_id: int | str) -> str:
    """Redis string: the observation count the current pool was computed from."""
    return f"multitune:pool:{experiment_id}:observations"


def pool_ready_channel(experiment_id: int | str) -> str:
    """Pub/sub channel announcing a refilled pool (a wake-up hint; the list is the record)."""
    return f"multitune:pool:{experiment_id}:ready"


#: Objectives the workers can train (``objective.name`` of a managed experiment).
OBJECTIVE_NAMES = ("augmented_branin", "augmented_hartmann", "sparse_resnet50")
