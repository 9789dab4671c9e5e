"""User objectives trained by real worker processes: the example's script objective
(``examples/tune-your-script``) on two workers; a worker SIGKILLed mid-run takes its script
down with it and the retried run resumes from ``MULTITUNE_CHECKPOINT_DIR``; a script that exits
1 gives a failed observation with its stderr tail; an entry-point objective of a package
installed for the worker trains; an objective no live worker provides is refused."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
import yaml

from shared.api_client import ApiClient
from shared.api_client import ApiRequestError
from shared.names import WORKER_KEY_PREFIX
from tests.platform_tests.conftest import client_for
from tests.services import REPO
from tests.services import Platform
from tests.services import wait_for
from tests.worker_tests import plugins

pytestmark = pytest.mark.slow

EXAMPLE = REPO / "examples" / "tune-your-script"


def _start(live: Platform, workers: int, objectives: Path | None, **env: str) -> None:
    live.start_api()
    live.start("suggester", "suggester")
    extra = ["--objectives", str(objectives)] if objectives else []
    for i in range(1, workers + 1):
        live.start(f"w{i}", "worker", "--name", f"w{i}", *extra, extra_env=env or None)


def _wait_completed(live: Platform, api: ApiClient, eid: str) -> dict[str, Any]:
    wait_for(
        lambda: api.get(f"/experiments/{eid}")["state"] == "completed",
        300,
        "the experiment to complete",
        live,
    )
    experiment: dict[str, Any] = api.get(f"/experiments/{eid}")
    return experiment


def _check_finished(api: ApiClient, eid: str) -> list[dict[str, Any]]:
    """A completed managed experiment's invariants, for either metric direction: the budget
    spent, one observation per suggestion, every run finished, the best full-cost observation
    as best assignment. Returns the observations."""
    experiment = api.get(f"/experiments/{eid}")
    assert experiment["state"] == "completed"
    observations = list(api.iterate(f"/experiments/{eid}/observations"))
    costs = {t["name"]: t["cost"] for t in experiment.get("tasks") or []}
    total = sum(costs[o["task"]["name"]] if o["task"] else 1.0 for o in observations)
    assert experiment["progress"]["observation_budget_consumed"] == pytest.approx(total)
    assert total >= experiment["observation_budget"]
    per_suggestion = Counter(o["suggestion"] for o in observations)
    assert per_suggestion and max(per_suggestion.values()) == 1, per_suggestion
    runs = list(api.iterate(f"/experiments/{eid}/training_runs"))
    assert all(r["finished"] for r in runs), [r["state"] for r in runs]
    full = [o for o in observations if not o["failed"] and (o["task"] or {"cost": 1})["cost"] == 1]
    best = api.get(f"/experiments/{eid}/best_assignments")["data"]
    if full:
        pick = max if experiment["metrics"][0]["objective"] == "maximize" else min
        assert best[0]["value"] == pytest.approx(pick(o["value"] for o in full))
    return observations


def test_the_example_script_objective_completes_its_budget_on_two_workers(
    live: Platform, tmp_path: Path
) -> None:
    _start(live, 2, EXAMPLE / "objectives.yaml")
    token = live.token()
    definition = yaml.safe_load((EXAMPLE / "experiment.yaml").read_text())
    definition["observation_budget"] = 4  # half the example's: the same runs, fewer of them
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(definition))
    created = live.cli("experiments", "create", "-f", str(path), token=token)
    assert created.returncode == 0, created.stderr
    eid = created.stdout.strip()
    api = ApiClient(live.api_url, token, retry_for_s=30)
    _wait_completed(live, api, eid)
    observations = _check_finished(api, eid)
    assert all(not o["failed"] for o in observations), [o["metadata"] for o in observations]
    assert max(o["value"] for o in observations) > 0.5  # val_accuracy of a CNN on digits
    runs = list(api.iterate(f"/experiments/{eid}/training_runs"))
    assert {r["worker"].split("@")[0] for r in runs} == {"w1", "w2"}
    assert len({r["task"]["name"] for r in runs}) >= 2
    for run in runs:
        epochs = round(run["task"]["cost"] * 8)
        assert run["checkpoint_count"] == epochs  # sigopt.log_checkpoint once per epoch
        assert f"epoch {epochs}/{epochs}: val_accuracy" in run["logs"]["stdout"]["content"]
        assert run["values"]["val_accuracy"]["value"] == pytest.approx(
            next(o["value"] for o in observations if o["suggestion"] == run["suggestion"])
        )


def _long_objectives(tmp_path: Path, max_epochs: int) -> Path:
    path = tmp_path / "objectives.yaml"
    spec = {
        "command": ["python", str(EXAMPLE / "train.py")],
        "env": {"OMP_NUM_THREADS": "1"},
        "max_epochs": max_epochs,
        "stop_grace_s": 2,
    }
    path.write_text(yaml.safe_dump({"digits_long": spec}))
    return path


def _scripts_of(process: psutil.Process) -> list[psutil.Process]:
    """The script objective processes under a worker: the supervisor and the training script."""
    return [
        p
        for p in process.children(recursive=True)
        if any("supervise.py" in part or "train.py" in part for part in p.cmdline())
    ]


def _dead(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_sigkilled_workers_script_dies_with_it_and_the_retry_resumes(
    live: Platform, tmp_path: Path
) -> None:
    max_epochs = 60
    _start(live, 2, _long_objectives(tmp_path, max_epochs))
    api = client_for(live)
    example = yaml.safe_load((EXAMPLE / "experiment.yaml").read_text())
    body = {
        **example,
        "tasks": [{"name": "half", "cost": 0.5}, {"name": "full", "cost": 1.0}],
        "observation_budget": 2,
        "parallel_bandwidth": 2,
        "objective": {"name": "digits_long", "config": {}},
    }
    eid = api.post("/experiments", body)["id"]

    def running_mid_way() -> dict[str, Any] | None:
        for run in api.iterate(f"/experiments/{eid}/training_runs", state="running"):
            epochs = round(run["task"]["cost"] * max_epochs)
            if run["worker"] and 2 <= run["checkpoint_count"] < epochs - 10:
                return run
        return None

    victim = wait_for(running_mid_way, 120, "a run to be mid-way", live)
    killed = victim["worker"].split("@")[0]
    survivor = {"w1": "w2", "w2": "w1"}[killed]
    scripts = _scripts_of(psutil.Process(live.running[killed].pid))
    assert len(scripts) >= 2, [p.cmdline() for p in scripts]  # supervisor and train.py
    live.kill(killed, signal.SIGKILL)
    wait_for(lambda: all(_dead(p) for p in scripts), 10, "the script to die with its worker")
    wait_for(
        lambda: api.get(f"/training_runs/{victim['id']}")["attempt"] >= 2,
        60,
        "the lost run to be retried",
        live,
    )
    _wait_completed(live, api, eid)
    _check_finished(api, eid)
    run = api.get(f"/training_runs/{victim['id']}")
    assert run["state"] == "completed" and run["worker"].startswith(f"{survivor}@")
    resumed = run["metadata"]["resumed_from_epoch"]
    assert resumed >= 2
    assert f"resumed from epoch {resumed}" in run["logs"]["stdout"]["content"]
    epochs = round(run["task"]["cost"] * max_epochs)
    checkpoints = list(api.iterate(f"/training_runs/{victim['id']}/checkpoints"))
    by_attempt = Counter(c["attempt"] for c in checkpoints)
    assert by_attempt[2] == epochs - resumed  # the retry trained only what was left
    assert len(checkpoints) <= epochs  # no epoch logged twice


def test_a_script_that_exits_1_gives_a_failed_observation_with_its_stderr(
    live: Platform, tmp_path: Path
) -> None:
    (tmp_path / "broken.py").write_text(
        "import sys\n"
        "print('loading data')\n"
        "for i in range(50):\n"
        "    print(f'warning {i}', file=sys.stderr)\n"
        "raise SystemExit('ValueError: lr must be positive')\n"
    )
    objectives = tmp_path / "objectives.yaml"
    objectives.write_text("broken: {command: [python, broken.py]}\n")
    _start(live, 1, objectives)
    api = client_for(live)
    body = {
        "name": "a broken script",
        "parameters": [{"name": "lr", "type": "double", "bounds": {"min": 0.001, "max": 1}}],
        "metrics": [{"name": "accuracy", "objective": "maximize"}],
        "observation_budget": 1,
        "parallel_bandwidth": 1,
        "objective": {"name": "broken", "config": {}},
    }
    eid = api.post("/experiments", body)["id"]
    _wait_completed(live, api, eid)
    (observation,) = _check_finished(api, eid)
    assert observation["failed"] and observation["values"] == []
    (run,) = api.iterate(f"/experiments/{eid}/training_runs")
    assert run["state"] == "failed"
    reason = run["failure_reason"]
    assert reason.startswith("script exited with code 1; stderr ends with:\n")
    assert reason.endswith("warning 49\nValueError: lr must be positive")
    assert run["logs"]["stdout"]["content"] == "loading data\n"


def test_an_entry_point_objective_of_an_installed_package_trains(
    live: Platform, tmp_path: Path, redis_client: redis.Redis
) -> None:
    site = plugins.install(tmp_path / "site")
    _start(live, 1, None, PYTHONPATH=str(site))
    wait_for(lambda: redis_client.keys(f"{WORKER_KEY_PREFIX}*"), 60, "the worker's advert", live)
    api = client_for(live)
    body = {
        "name": "an installed objective",
        "parameters": [
            {"name": "x1", "type": "double", "bounds": {"min": 0, "max": 4}},
            {"name": "x2", "type": "double", "bounds": {"min": 0, "max": 6}},
        ],
        "metrics": [
            {"name": "value", "objective": "minimize"},
            {"name": "scale", "strategy": "store"},
        ],
        "observation_budget": 2,
        "parallel_bandwidth": 1,
        "objective": {"name": "plugin_bowl", "config": {"scale": 2}},
    }
    eid = api.post("/experiments", body)["id"]
    _wait_completed(live, api, eid)
    observations = _check_finished(api, eid)
    assert len(observations) == 2
    for o in observations:
        x1, x2 = o["assignments"]["x1"], o["assignments"]["x2"]
        assert o["value"] == pytest.approx((x1 - 2) ** 2 + (x2 - 3) ** 2)
        assert {v["name"]: v["value"] for v in o["values"]}["scale"] == 2.0

    # With the worker live, an objective no worker provides is refused at once.
    with pytest.raises(ApiRequestError) as refused:
        api.post("/experiments", {**body, "objective": {"name": "no_such_objective"}})
    assert refused.value.status == 400
    assert "objective.name" in refused.value.message
    assert "no_such_objective" in refused.value.message
    assert "plugin_bowl" in refused.value.message  # what the live workers do provide

    # A clean shutdown removes the worker's advert at once (it would live out its TTL).
    (key,) = redis_client.keys(f"{WORKER_KEY_PREFIX}*")
    assert redis_client.ttl(key) > 5
    live.kill("w1", signal.SIGTERM)
    assert not redis_client.exists(key)
