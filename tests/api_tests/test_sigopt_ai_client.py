"""The unmodified ``sigopt`` client's AI module and run tracking against a live API (gunicorn,
real HTTP), each script in its own process with ``SIGOPT_API_URL``, ``SIGOPT_API_TOKEN`` and
``SIGOPT_PROJECT`` pointing at it, as a user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.services import Platform

#: Printed by each script before its summary (the client logs to stdout too).
MARK = "RESULT "

PRELUDE = """
import json, math, sys
import sigopt
from sigopt.exception import ApiException, ConflictingProjectException, ProjectNotFoundException

def done(**summary):
    print("RESULT " + json.dumps(summary), flush=True)
"""

LOOP = """
sigopt.create_project("ai-loop", "AI loop")
try:
    sigopt.create_project("ai-loop")
    conflict = False
except ConflictingProjectException:
    conflict = True

experiment = sigopt.create_experiment(
    name="sigopt loop",
    parameters=[
        dict(name="x", type="double", bounds=dict(min=0, max=1)),
        dict(name="lr", type="double", bounds=dict(min=1e-4, max=1), transformation="log"),
        dict(name="layers", type="int", bounds=dict(min=1, max=4)),
        dict(name="optimizer", type="categorical", categorical_values=["sgd", "adam"]),
    ],
    metrics=[
        dict(name="score", objective="maximize"),
        dict(name="loss", objective="minimize", strategy="store"),
    ],
    budget=BUDGET,
    parallel_bandwidth=1,
)
seen = []
for run in experiment.loop():
    with run:
        p = run.params
        assert isinstance(p.layers, int) and 1 <= p.layers <= 4, p
        assert p.optimizer in ("sgd", "adam") and 1e-4 <= p.lr <= 1 and 0 <= p.x <= 1, p
        score = -((p.x - 0.3) ** 2) - 0.1 * (math.log10(p.lr) + 2) ** 2 + 0.05 * p.layers
        for epoch in range(3):
            run.log_checkpoint({"score": score * (epoch + 1) / 3, "loss": 1 - score})
        run.log_metadata("epochs", 3)
        run.log_metric("score", score, 0.01)
        run.log_metric("loss", 1 - score)
    seen.append({"id": run.id, "score": score})
finished = experiment.is_finished()
runs = [r.to_json() for r in experiment.get_runs()]
best = [r.to_json() for r in experiment.get_best_runs()]
sigopt.archive_experiment(experiment.id)
archived = sigopt.get_experiment(experiment.id).state
sigopt.unarchive_experiment(experiment.id)
restored = sigopt.get_experiment(experiment.id)
done(
    conflict=conflict, experiment=experiment.id, client=experiment.client, seen=seen,
    finished=finished, runs=runs, best=best, archived=archived, restored=restored.state,
    progress=restored.progress.to_json(), budget=restored.budget,
)
"""

TRACKING = """
sigopt.create_project("tracking")
run = sigopt.create_run(name="standalone")
with run:
    run.params.update({"lr": 0.1, "layers": 3})
    run.params.setdefault("batch", 32)
    run.params.optimizer = "adam"
    del run.params["optimizer"]
    run.log_model("xgboost")
    run.log_dataset("digits")
    run.log_metric("accuracy", 0.87, 0.02)
    run.log_failure()
standalone = sigopt.get_run(run.id).to_json()
uploaded = sigopt.upload_runs(
    [{"name": f"u{i}", "state": "completed", "values": {"accuracy": {"value": i}}}
     for i in range(3)]
)

multitask = sigopt.create_experiment(
    name="multitask",
    parameters=[dict(name="x", type="double", bounds=dict(min=0, max=1))],
    metrics=[dict(name="score", objective="maximize")],
    tasks=[dict(name="cheap", cost=0.25), dict(name="full", cost=1.0)],
    budget=3,
)
runs = []
for run in multitask.loop():
    with run:
        task = sigopt.get_run(run.id).to_json()["task"]
        score = 100.0 if task["cost"] < 1 else run.params.x
        run.log_metric("score", score)
    runs.append({"id": run.id, "task": task, "score": score})
best = [r.to_json() for r in multitask.get_best_runs()]
multitask.refresh()
done(
    standalone=standalone, uploaded=[r.id for r in uploaded], multitask=multitask.id,
    runs=runs, best=best, progress=multitask.progress.to_json(),
)
"""

INTRUDER = """
statuses = {}
try:
    sigopt.create_run(name="intruder")
    statuses["project"] = "created"
except ProjectNotFoundException:
    statuses["project"] = 404
for name, call in (
    ("get_run", lambda: sigopt.get_run(RUN)),
    ("archive_run", lambda: sigopt.archive_run(RUN)),
    ("get_experiment", lambda: sigopt.get_experiment(EXPERIMENT)),
    ("archive_experiment", lambda: sigopt.archive_experiment(EXPERIMENT)),
):
    try:
        call()
        statuses[name] = 200
    except ApiException as exc:
        statuses[name] = exc.status_code
done(statuses=statuses)
"""


def _run_script(
    platform: Platform, token: str, project: str, body: str, cwd: Path, **values: Any
) -> dict[str, Any]:
    """Run ``body`` with the sigopt client in a fresh interpreter; its summary."""
    constants = "".join(f"{name} = {value!r}\n" for name, value in values.items())
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGOPT_")}
    env.update(
        SIGOPT_API_URL=platform.api_url,
        SIGOPT_API_TOKEN=token,
        SIGOPT_PROJECT=project,
        SIGOPT_HOME=str(cwd / "sigopt-home"),
    )
    done = subprocess.run(
        [sys.executable, "-c", PRELUDE + constants + body],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:], platform.log("api"))
    [line] = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    summary: dict[str, Any] = json.loads(line.removeprefix(MARK))
    return summary


def _get(platform: Platform, token: str, path: str, **params: Any) -> Any:
    response = requests.get(
        f"{platform.api_url}/v1{path}", auth=(token, ""), params=params, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.slow
def test_ai_experiment_loop_to_the_budget(
    make_platform: Callable[..., Platform], tmp_path: Path
) -> None:
    """The client's loop with a live suggester: every parameter type, checkpoints, metadata,
    metrics; the runs, the best run, archive and unarchive; the pool served the model's
    points, as for any client-driven experiment."""
    budget = 8
    platform = make_platform(suggestion_wait_s="5")
    platform.start_api()
    platform.start("suggester", "suggester")
    token = platform.token()
    out = _run_script(platform, token, "ai-loop", LOOP, tmp_path, BUDGET=budget)

    assert out["conflict"] is True
    assert len(out["seen"]) == budget and out["finished"] is True
    runs = {r["id"]: r for r in out["runs"]}
    assert set(runs) == {s["id"] for s in out["seen"]}
    for seen in out["seen"]:
        run = runs[seen["id"]]
        assert run["state"] == "completed" and run["experiment"] == out["experiment"]
        assert run["checkpoint_count"] == 3 and run["metadata"] == {"epochs": 3}
        assert run["values"]["score"]["value"] == pytest.approx(seen["score"])
        assert run["values"]["score"]["value_stddev"] == 0.01
        assert run["values"]["loss"]["value"] == pytest.approx(1 - seen["score"])
        assert run["observation"] is not None and run["project"] == "ai-loop"
    top = max(out["seen"], key=lambda s: s["score"])
    assert [r["id"] for r in out["best"]] == [top["id"]]
    assert (out["archived"], out["restored"]) == ("deleted", "active")
    assert out["progress"]["remaining_budget"] == 0
    assert out["progress"]["finished_run_count"] == budget
    assert out["budget"] == budget

    eid = out["experiment"]
    observations = _get(platform, token, f"/experiments/{eid}/observations")
    assert observations["count"] == budget
    assert sorted(o["value"] for o in observations["data"]) == pytest.approx(
        sorted(s["score"] for s in out["seen"])
    )
    sources = [
        s["source"] for s in _get(platform, token, f"/experiments/{eid}/suggestions")["data"]
    ]
    assert len(sources) == budget and "pool" in sources, sources


@pytest.mark.slow
def test_runs_outside_experiments_multitask_and_isolation(
    make_platform: Callable[..., Platform], tmp_path: Path
) -> None:
    platform = make_platform(suggestion_wait_s="0.2")
    platform.start_api()
    token = platform.token()
    out = _run_script(platform, token, "tracking", TRACKING, tmp_path)

    standalone = out["standalone"]
    assert standalone["state"] == "failed" and standalone["experiment"] is None
    assert standalone["assignments"] == {"lr": 0.1, "layers": 3, "batch": 32}
    assert standalone["model"]["type"] == "xgboost" and list(standalone["datasets"]) == ["digits"]
    assert standalone["values"]["accuracy"]["value"] == 0.87
    assert standalone["values"]["accuracy"]["value_stddev"] == 0.02
    assert standalone["observation"] is None and standalone["project"] == "tracking"
    assert len(out["uploaded"]) == 3

    runs = out["runs"]
    costs = [r["task"]["cost"] for r in runs]
    assert {r["task"]["name"] for r in runs} <= {"cheap", "full"}
    assert sum(costs) >= 3 > sum(costs[:-1])  # the loop stopped as the budget ran out
    assert out["progress"]["remaining_budget"] == pytest.approx(3 - sum(costs))
    full = [r for r in runs if r["task"]["cost"] == 1.0]
    if full:  # the cheap runs' 100 never wins
        top = max(full, key=lambda r: r["score"])
        assert [(b["id"], b["task"]["name"]) for b in out["best"]] == [(top["id"], "full")]
    else:
        assert out["best"] == []

    project_runs = _get(platform, token, "/clients/1/projects/tracking/training_runs")
    assert project_runs["count"] == 1 + 3 + len(runs)

    other = platform.token("globex")
    intruder = _run_script(
        platform,
        other,
        "tracking",
        INTRUDER,
        tmp_path,
        RUN=standalone["id"],
        EXPERIMENT=out["multitask"],
    )
    assert intruder["statuses"] == {
        "project": 404,
        "get_run": 404,
        "archive_run": 404,
        "get_experiment": 404,
        "archive_experiment": 404,
    }
    assert _get(platform, token, f"/training_runs/{standalone['id']}")["deleted"] is False
