"""SQLAlchemy 2 models: the system of record. Only the API process writes these tables.

Wire shapes live in `services.api.serialize` and `services.api.schemas`, not here. Times are Unix
seconds (float). Definitions that are only ever read whole (parameters, metrics, tasks) are JSON.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON
from sqlalchemy import BigInteger
from sqlalchemy import Boolean
from sqlalchemy import Float
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import Integer
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy import false
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from shared.states import ExperimentState
from shared.states import RunState
from shared.states import SuggestionState


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Client(Base):
    """A tenant: tokens and experiments belong to exactly one client."""

    __tablename__ = "clients"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created: Mapped[float] = mapped_column(Float)


class Token(Base):
    """An API token; only its SHA-256 digest is stored. A run-scoped token (``training_run_id``
    set) acts for one attempt of one run and stops validating when the run moves on or ends."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created: Mapped[float] = mapped_column(Float)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    training_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("training_runs.id"), nullable=True, index=True
    )
    attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Project(Base):
    """A client's project (SigOpt's AI module): a named home for AI experiments and runs.
    ``reference_id`` is the id clients use (``[a-z0-9._-]``, at most 32 characters), unique per
    client."""

    __tablename__ = "projects"
    __table_args__ = (
        UniqueConstraint("client_id", "reference_id", name="uq_projects_client_reference"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    reference_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    created: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)


class Experiment(Base):
    """``definition`` holds parameters, metrics, conditionals, linear_constraints, tasks, type,
    num_solutions, objective and project (its reference id) as validated SigOpt JSON.

    An AI experiment (``ai``) is an experiment created in a project through
    ``/aiexperiments``; the flag only decides how it is shown (``aiexperiment`` JSON with
    ``budget`` and run progress)."""

    __tablename__ = "experiments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id"), nullable=True, index=True
    )
    ai: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    name: Mapped[str] = mapped_column(String(100))
    #: An `ExperimentState`.
    state: Mapped[str] = mapped_column(String(16), default=ExperimentState.ACTIVE)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    observation_budget: Mapped[float | None] = mapped_column(Float, nullable=True)
    parallel_bandwidth: Mapped[int] = mapped_column(Integer, default=1)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    created: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)
    #: Next index of the initial design the API serves when the pool is empty.
    design_cursor: Mapped[int] = mapped_column(Integer, default=0)


class Suggestion(Base):
    __tablename__ = "suggestions"
    __table_args__ = (Index("ix_suggestions_experiment_key", "experiment_id", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"), index=True)
    assignments: Mapped[dict[str, Any]] = mapped_column(JSON)
    task: Mapped[str | None] = mapped_column(String(100), nullable=True)
    #: `shared.space.assignment_key` of (assignments, task), for duplicate checks.
    key: Mapped[str] = mapped_column(String(64))
    #: A `SuggestionState`: open until a non-deleted observation references it, then closed.
    state: Mapped[str] = mapped_column(String(16), default=SuggestionState.OPEN)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Where it came from: a `services.api.store.suggestions.SuggestionSource`.
    source: Mapped[str] = mapped_column(String(16))
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    created: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)


class QueuedSuggestion(Base):
    __tablename__ = "queued_suggestions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"), index=True)
    assignments: Mapped[dict[str, Any]] = mapped_column(JSON)
    task: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created: Mapped[float] = mapped_column(Float)


class Observation(Base):
    __tablename__ = "observations"
    __table_args__ = (
        UniqueConstraint("experiment_id", "idempotency_key", name="uq_observations_idempotency"),
        Index("ix_observations_experiment_key", "experiment_id", "key"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"), index=True)
    suggestion_id: Mapped[int | None] = mapped_column(
        ForeignKey("suggestions.id"), nullable=True, index=True
    )
    #: Equals ``suggestion_id`` while this is the suggestion's one live observation; a unique
    #: column, so a second live observation of a suggestion cannot be committed. NULL when the
    #: observation is deleted or was created with ``allow_multiple``.
    exclusive_suggestion_id: Mapped[int | None] = mapped_column(
        Integer, nullable=True, unique=True
    )
    assignments: Mapped[dict[str, Any]] = mapped_column(JSON)
    task: Mapped[str | None] = mapped_column(String(100), nullable=True)
    #: `shared.space.assignment_key` of (assignments, task).
    key: Mapped[str] = mapped_column(String(64))
    cost: Mapped[float] = mapped_column(Float, default=1.0)
    #: ``[{"name", "value", "value_stddev"}]``; empty when failed.
    values: Mapped[list[Any]] = mapped_column(JSON)
    failed: Mapped[bool] = mapped_column(Boolean, default=False)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)


class TrainingRun(Base):
    """A training run: of a suggestion of an experiment (trained by a worker, or tracked by a
    client), or of a project only (tracked by a client, no experiment and no suggestion).
    ``attempt`` fences results of older attempts. ``data`` holds what a client tracks (values,
    model, datasets, logs, source code, extra assignments, ...); `deleted` means archived."""

    __tablename__ = "training_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id"), nullable=True, index=True
    )
    experiment_id: Mapped[int | None] = mapped_column(
        ForeignKey("experiments.id"), nullable=True, index=True
    )
    suggestion_id: Mapped[int | None] = mapped_column(
        ForeignKey("suggestions.id"), nullable=True, index=True
    )
    #: The observation recorded when the run ended (`services.api.store.training_runs`).
    observation_id: Mapped[int | None] = mapped_column(
        ForeignKey("observations.id"), nullable=True
    )
    deleted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: A `RunState`.
    state: Mapped[str] = mapped_column(String(16), default=RunState.QUEUED)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    heartbeat: Mapped[float | None] = mapped_column(Float, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    traceback: Mapped[str | None] = mapped_column(Text, nullable=True)
    logs: Mapped[str | None] = mapped_column(Text, nullable=True)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    checkpoint_count: Mapped[int] = mapped_column(Integer, default=0)
    #: Whether a checkpoint archive was stored for the run
    #: (`services.api.store.checkpoint_archives`).
    has_checkpoint_archive: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    #: The cheaper run of the same suggestion's assignments whose checkpoint this run resumes
    #: (`services.api.store.continuation`, which checks it); its observation is charged the
    #: difference in cost. No foreign key: SQLite adds one only by copying this table, which
    #: other tables reference (migration 0005), and runs of experiments are never deleted.
    continues_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)
    started: Mapped[float | None] = mapped_column(Float, nullable=True)
    completed: Mapped[float | None] = mapped_column(Float, nullable=True)


class Checkpoint(Base):
    """Per-epoch metric values of a training run."""

    __tablename__ = "checkpoints"
    __table_args__ = (Index("ix_checkpoints_run_id", "training_run_id", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    training_run_id: Mapped[int] = mapped_column(ForeignKey("training_runs.id"))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    epoch: Mapped[int | None] = mapped_column(Integer, nullable=True)
    values: Mapped[list[Any]] = mapped_column(JSON)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    created: Mapped[float] = mapped_column(Float)


class OutboxEvent(Base):
    """An event committed with the change it describes; the relay moves it to Redis, then
    deletes it (see `services.api.outbox`)."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: An `EventType`.
    type: Mapped[str] = mapped_column(String(40))
    experiment_id: Mapped[int] = mapped_column(Integer)
    created: Mapped[float] = mapped_column(Float)


class Artifact(Base):
    """A file a training run uploaded (plot, image, model checkpoint). The bytes live under
    ``<data dir>/artifacts/<storage_key>``; the key is made of ids only, never the file name.

    A file declared by the sigopt client (``POST .../files`` with JSON) is ``pending`` until its
    bytes arrive on the signed upload URL, then ``ready``; only ready files are listed or served.
    While pending, ``size`` and ``content_md5`` are the declared ones and ``sha256`` is empty."""

    __tablename__ = "artifacts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: The run's experiment; None for a run tracked in a project only.
    experiment_id: Mapped[int | None] = mapped_column(
        ForeignKey("experiments.id"), nullable=True, index=True
    )
    training_run_id: Mapped[int] = mapped_column(ForeignKey("training_runs.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    name: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(200))
    created: Mapped[float] = mapped_column(Float)
    #: A `services.api.store.artifacts.FileStatus`.
    status: Mapped[str] = mapped_column(String(16), default="ready", server_default="ready")
    #: Base64 MD5 of the content (declared by the client, or computed on a direct upload).
    content_md5: Mapped[str | None] = mapped_column(String(24), nullable=True)
    #: The client's file name (base name only), when it sent one.
    filename: Mapped[str | None] = mapped_column(String(200), nullable=True)
    #: Random value signed into the upload URL (a reused id cannot take an old URL).
    upload_nonce: Mapped[str | None] = mapped_column(String(64), nullable=True)
