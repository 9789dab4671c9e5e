"""Names that cross process boundaries: Redis keys and streams, Celery queues and task names."""

from __future__ import annotations

#: Stream of experiment/suggestion/observation events written by the API's outbox relay.
EVENTS_STREAM = "multitune:events"
#: Stream of training results written by workers.
RESULTS_STREAM = "multitune:results"
#: Consumer group of the suggester on both streams.
SUGGESTER_GROUP = "suggester"

#: The one Celery task: train one attempt of a training run (its argument a `TrainRequest`).
TRAIN_TASK = "multitune.train"
#: Training tasks are routed by objective: a task for objective X goes to queue
#: ``train_queue(X)``, and a worker consumes the queues of the objectives it provides (the
#: ones in its `WorkerAdvert`), so a task only reaches a worker that can train it.
TRAIN_QUEUE_PREFIX = "train."


def train_queue(objective: str) -> str:
    """Celery queue of the training tasks of one objective (``objective.name``)."""
    return f"{TRAIN_QUEUE_PREFIX}{objective}"


def pool_key(experiment_id: int | str) -> str:
    """Redis list of precomputed suggestions for one experiment (JSON entries, FIFO)."""
    return f"multitune:pool:{experiment_id}"


def pool_version_key(experiment_id: int | str) -> str:
    """Redis string: the observation count the current pool was computed from."""
    return f"multitune:pool:{experiment_id}:observations"


def pool_ready_channel(experiment_id: int | str) -> str:
    """Pub/sub channel announcing a refilled pool (a wake-up hint; the list is the record)."""
    return f"multitune:pool:{experiment_id}:ready"


#: The built-in objectives, which every worker can train (``objective.name`` of a managed
#: experiment); a worker may provide more (entry points, script objectives) and says so in its
#: `WorkerAdvert`.
OBJECTIVE_NAMES = ("augmented_branin", "augmented_hartmann", "sparse_resnet50")

#: Prefix of the keys that hold live workers' adverts (`shared.messages.WorkerAdvert`).
WORKER_KEY_PREFIX = "multitune:worker:"
#: A worker advert expires this long after its last renewal (a dead worker drops out).
WORKER_ADVERT_TTL_S = 30


def worker_key(worker_name: str) -> str:
    """Redis string holding one worker's advert (JSON), with a TTL."""
    return f"{WORKER_KEY_PREFIX}{worker_name}"
