"""``objectives.yaml`` (`load_objectives_file`): a valid file gives its script objectives with
their defaults; every mistake is refused when the worker starts, naming the file, the objective
and the key. The example's file is valid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.worker.objectives import Catalog
from services.worker.objectives import CatalogError
from services.worker.objectives.scripts import DEFAULT_STOP_GRACE_S
from services.worker.objectives.scripts import ObjectivesFileError
from services.worker.objectives.scripts import child_path
from services.worker.objectives.scripts import load_objectives_file
from tests.services import REPO

EXAMPLE = REPO / "examples" / "tune-your-script" / "objectives.yaml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "objectives.yaml"
    path.write_text(text)
    return path


def test_a_full_declaration_and_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    path = _write(
        tmp_path,
        """
full:
  command: [python, train.py, --flag, 3]
  cwd: code
  env: {OMP_NUM_THREADS: 1, MODE: fast}
  max_epochs: 8
  config: {batch_size: 64}
  stop_grace_s: 2.5
  continuable: true
minimal:
  command: "python -c 'print(1)'"
""",
    )
    full, minimal = load_objectives_file(path).values()
    assert full.name == "full"
    assert full.command == ("python", "train.py", "--flag", "3")
    assert full.cwd == (tmp_path / "code").resolve()
    assert full.env == {"OMP_NUM_THREADS": "1", "MODE": "fast"}
    assert (full.max_epochs, full.stop_grace_s, full.continuable) == (8, 2.5, True)
    # The experiment's config wins over the file's defaults; max_epochs is always there.
    assert full.run_config({"batch_size": 32, "lr": 0.1}) == {
        "max_epochs": 8,
        "batch_size": 32,
        "lr": 0.1,
    }
    assert full.run_config({"max_epochs": 2})["max_epochs"] == 2
    # A string is split like a shell would (no shell runs it); cwd is the file's directory.
    assert minimal.command == ("python", "-c", "print(1)")
    assert minimal.cwd == tmp_path.resolve()
    assert (minimal.env, minimal.max_epochs, minimal.config) == ({}, 1, {})
    assert minimal.stop_grace_s == DEFAULT_STOP_GRACE_S and not minimal.continuable


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- just a list\n", "expected a mapping of objective names to their command, got list"),
        ("", "got nothing"),
        ("a: [unclosed\n", "not valid YAML"),
        ("'bad name!': {command: [python]}\n", "objective name 'bad name!': use 1-100 letters"),
        ("x: python train.py\n", "x: expected a mapping with at least 'command', got str"),
        ("x: {cwd: .}\n", "x.command: missing"),
        ("x: {command: []}\n", "x.command: is empty"),
        (
            "x: {command: {a: 1}}\n",
            "x.command: expected a list of arguments or a string, got dict",
        ),
        ('x: {command: "python \'open"}\n', "x.command: cannot split"),
        ("x: {command: [no-such-program-here]}\n", "x.command: 'no-such-program-here' is not on"),
        ("x: {command: [./missing.sh]}\n", "x.command: './missing.sh' is not an executable file"),
        ("x: {command: [python], comand: 1}\n", "x.comand: unknown key; expected some of command"),
        ("x: {command: [python], cwd: nowhere}\n", "x.cwd: 'nowhere' is not a directory"),
        ("x: {command: [python], env: [A]}\n", "x.env: expected a mapping of variable names"),
        ("x: {command: [python], env: {1A: b}}\n", "x.env.1A: not a valid environment variable"),
        ("x: {command: [python], env: {A: yes}}\n", "x.env.A: expected a string (quote it), got"),
        ("x: {command: [python], env: {SIGOPT_API_TOKEN: t}}\n", "x.env.SIGOPT_API_TOKEN: set by"),
        ("x: {command: [python], env: {MULTITUNE_EPOCHS: '3'}}\n", "x.env.MULTITUNE_EPOCHS: set"),
        ("x: {command: [python], env: {CUDA_VISIBLE_DEVICES: '0'}}\n", "x.env.CUDA_VISIBLE_DEV"),
        ("x: {command: [python], max_epochs: 0}\n", "x.max_epochs: expected an integer >= 1"),
        ("x: {command: [python], max_epochs: 2.5}\n", "x.max_epochs: expected an integer >= 1"),
        ("x: {command: [python], config: [1]}\n", "x.config: expected a mapping, got list"),
        ("x: {command: [python], config: {max_epochs: 3}}\n", "x.config.max_epochs: give it as"),
        ("x: {command: [python], stop_grace_s: 0}\n", "x.stop_grace_s: expected seconds in"),
        ("x: {command: [python], continuable: 'yes'}\n", "x.continuable: expected true or false"),
    ],
)
def test_mistakes_are_refused_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ObjectivesFileError) as caught:
        load_objectives_file(path, base_env={"PATH": os.defpath})
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ObjectivesFileError, match="cannot read"):
        load_objectives_file(tmp_path / "absent.yaml")


def test_python_is_the_workers_interpreter_unless_env_sets_path() -> None:
    own = str(Path(sys.executable).parent)
    assert child_path({}, {"PATH": "/usr/bin"}) == f"{own}{os.pathsep}/usr/bin"
    assert child_path({"PATH": "/opt/bin"}, {"PATH": "/usr/bin"}) == "/opt/bin"


def test_a_script_objective_may_not_take_a_built_in_name(tmp_path: Path) -> None:
    path = _write(tmp_path, "augmented_branin: {command: [python]}\n")
    with pytest.raises(CatalogError, match="augmented_branin: a built-in objective has this name"):
        Catalog.discover(path)


def test_the_examples_objectives_file_is_valid() -> None:
    catalog = Catalog.discover(EXAMPLE)
    (objective,) = catalog.scripts.values()
    assert objective.name in catalog.names() and "augmented_branin" in catalog.names()
    assert (objective.cwd / objective.command[-1]).is_file()
    assert objective.max_epochs > 1


def test_the_worker_command_refuses_a_bad_file_before_starting(tmp_path: Path) -> None:
    path = _write(tmp_path, "mine: {command: [python, train.py], max_epochs: many}\n")
    out = subprocess.run(
        [sys.executable, "-m", "services.cli", "worker", "--objectives", str(path)],
        cwd=REPO,
        env={**os.environ, "MULTITUNE_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert f"Error: {path}: mine.max_epochs: expected an integer >= 1, got 'many'" in out.stderr
