"""Continuation: a training run that resumes a cheaper run's checkpoint, and what it costs.

When an experiment's objective allows it (`shared.workers.continuable`), the suggester may
create a run that ``continues`` an earlier run of the same assignments on a cheaper task: the
worker fills its checkpoint directory from that run's archive, and the objective trains on
from there. `check` is the rule for such a source run; `charged_cost` charges the observation
of the continuing run only the difference of the two tasks' costs, since the source run's
observation already paid for the epochs they share.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.api.errors import invalid
from services.api.models import Experiment
from services.api.models import Observation
from services.api.models import Suggestion
from services.api.models import TrainingRun
from services.api.store import workers
from shared.space import Assignments
from shared.space import ExperimentSpec
from shared.space import assignment_key
from shared.states import RunState

FIELD = "continues"


def check(
    session: Session,
    experiment: Experiment,
    spec: ExperimentSpec,
    assignments: Assignments,
    task: str | None,
    continues: int,
) -> TrainingRun:
    """The run ``continues`` that a new run of ``(assignments, task)`` may resume, else a 400
    naming ``continues``: it must be a live run of the same experiment and assignments on a
    cheaper task, completed with a successful observation and a stored checkpoint archive; and
    when the experiment names an objective, the live workers must say its runs can continue
    (`workers.check_continuable`). Without one the client trains the runs and decides."""
    objective = experiment.definition.get("objective")
    if objective:
        workers.check_continuable(str(objective["name"]), FIELD)
    source = session.get(TrainingRun, continues)
    if source is None or source.experiment_id != experiment.id or source.deleted:
        raise invalid(FIELD, f"No training run: {continues} in experiment: {experiment.id}")
    observation = (
        session.get(Observation, source.observation_id) if source.observation_id else None
    )
    if source.state != RunState.COMPLETED or observation is None or observation.failed:
        raise invalid(FIELD, f"training run {continues} did not complete successfully")
    if not source.has_checkpoint_archive:
        raise invalid(FIELD, f"training run {continues} stored no checkpoint archive")
    suggestion = session.get(Suggestion, source.suggestion_id) if source.suggestion_id else None
    if suggestion is None or assignment_key(suggestion.assignments, None) != assignment_key(
        assignments, None
    ):
        raise invalid(FIELD, f"training run {continues} trained other assignments")
    if spec.task_cost(suggestion.task) >= spec.task_cost(task):
        raise invalid(
            FIELD,
            f"training run {continues} trained task {suggestion.task!r}, which is not cheaper "
            f"than {task!r}",
        )
    return source


def charged_cost(
    session: Session, spec: ExperimentSpec, suggestion: Suggestion | None, task: str | None
) -> float:
    """The budget an observation of ``suggestion`` on ``task`` consumes: the task's cost, less
    the cost of the source run's task when the suggestion's run continued another run (only
    possible with tasks: a source trained a cheaper one)."""
    if suggestion is None or not spec.is_multitask:
        return spec.task_cost(task)
    source_task = session.execute(
        select(Suggestion.task)
        .join(TrainingRun, TrainingRun.suggestion_id == Suggestion.id)
        .where(
            TrainingRun.id
            == select(TrainingRun.continues_id)
            .where(
                TrainingRun.suggestion_id == suggestion.id, TrainingRun.continues_id.is_not(None)
            )
            .limit(1)
            .scalar_subquery()
        )
    ).first()
    return continued_cost(spec, task, None if source_task is None else source_task[0])


def continued_cost(spec: ExperimentSpec, task: str | None, source_task: str | None) -> float:
    """The cost of ``task`` for a run that continued a run of ``source_task`` (None: it did
    not continue one; a source always trained a task, since only a cheaper task qualifies)."""
    cost = spec.task_cost(task)
    if source_task is None:
        return cost
    return max(cost - spec.task_cost(source_task), 0.0)
