"""`history.load`: an experiment read through the real API (in-process, over HTTP) as the
optimizer's frozen values."""

from __future__ import annotations

from typing import Any

import pytest

from services.suggester import history
from services.suggester.optimizer import Observation
from services.suggester.optimizer import Pending
from shared.api_client import ApiRequestError
from shared.states import ExperimentState
from tests.inprocess import BRANIN
from tests.inprocess import InProcessApi

MULTITASK: dict[str, Any] = {k: v for k, v in BRANIN.items() if k != "objective"}


def test_load_reads_observations_oldest_first_and_open_suggestions_as_pending(
    inprocess_api: InProcessApi,
) -> None:
    user = inprocess_api.user
    eid = int(user.post("/experiments", MULTITASK)["id"])

    def suggest(x1: float, task: str) -> str:
        body = {"assignments": {"x1": x1, "x2": 1.0}, "task": task}
        suggestion_id: str = user.post(f"/experiments/{eid}/suggestions", body)["id"]
        return suggestion_id

    observed, failing, open_one, withdrawn = (
        suggest(1.0, "full"),
        suggest(2.0, "cheap"),
        suggest(3.0, "cheap"),
        suggest(4.0, "full"),
    )
    value = {"name": "value", "value": 1.5, "value_stddev": 0.1}
    user.post(f"/experiments/{eid}/observations", {"suggestion": observed, "values": [value]})
    user.post(f"/experiments/{eid}/observations", {"suggestion": failing, "failed": True})
    user.delete(f"/experiments/{eid}/suggestions/{withdrawn}")

    h = history.load(inprocess_api.service, eid)
    assert h.experiment.id == eid and h.experiment.state is ExperimentState.ACTIVE
    assert h.observation_count == 2
    assert [t.name for t in h.spec.tasks] == ["cheap", "full"]
    assert h.observations == [
        Observation(
            assignments={"x1": 1.0, "x2": 1.0},
            task="full",
            values={"value": 1.5},
            stddevs={"value": 0.1},
        ),
        Observation(assignments={"x1": 2.0, "x2": 1.0}, task="cheap", values={}, failed=True),
    ]
    assert h.pending == [Pending(assignments={"x1": 3.0, "x2": 1.0}, task="cheap")]
    assert [s.id for s in h.open_suggestions] == [int(open_one)]


def test_load_of_an_unknown_experiment_is_a_404(inprocess_api: InProcessApi) -> None:
    with pytest.raises(ApiRequestError) as missing:
        history.load(inprocess_api.service, 12345)
    assert missing.value.status == 404
