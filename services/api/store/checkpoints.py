"""Checkpoints: a run's per-epoch metric values, kept without a cap and paged newest first."""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from services.api.models import Checkpoint
from services.api.models import TrainingRun
from services.api.schemas.common import PageQuery
from services.api.schemas.training_runs import CheckpointCreate
from services.api.store.paging import fetch_page
from services.api.store.training_runs import check_attempt


def add(session: Session, run: TrainingRun, body: CheckpointCreate) -> Checkpoint:
    check_attempt(run, body.attempt)
    checkpoint = Checkpoint(
        training_run_id=run.id,
        attempt=run.attempt,
        epoch=body.epoch,
        values=[v.model_dump() for v in body.values],
        meta=body.metadata,
        created=time.time(),
    )
    session.add(checkpoint)
    session.execute(
        update(TrainingRun)
        .where(TrainingRun.id == run.id)
        .values(checkpoint_count=TrainingRun.checkpoint_count + 1, updated=time.time())
    )
    session.commit()
    return checkpoint


def list_page(
    session: Session, run: TrainingRun, query: PageQuery
) -> tuple[list[Checkpoint], int, dict[str, str | None]]:
    stmt = select(Checkpoint).where(Checkpoint.training_run_id == run.id)
    return fetch_page(session, stmt, Checkpoint.id, query)
