"""Script objectives: commands declared in a worker's ``objectives.yaml`` (never sent by the API).

The file maps objective names to what to run::

    digits_cnn:                      # the name an experiment's objective.name gives
      command: [python, train.py]    # required: an argv list, or a string split like a shell
                                     #   (no shell runs it: write [bash, -c, "..."] for one)
      cwd: .                         # relative to this file; default: this file's directory
      env: {OMP_NUM_THREADS: "1"}    # added to the child's environment
      max_epochs: 8                  # MULTITUNE_EPOCHS = round(cost x max_epochs), at least 1;
                                     #   an experiment's objective.config.max_epochs wins
      config: {batch_size: 64}       # defaults under the experiment's objective.config
      stop_grace_s: 10               # on stop, pause or lease loss: SIGTERM, then SIGKILL after
      continuable: false             # true: a run of a cheap task may continue into a costlier
                                     #   one from its checkpoint (`Objective.continuable`)

Only ``command`` is required. `load_objectives_file` checks everything when the worker starts
and raises `ObjectivesFileError` naming the file, the objective and the key. The worker runs a
script objective with the run context of ``sigopt run`` (`services.worker.script_runner`).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

import yaml

#: Objective names: they name Celery queues and Redis keys, and appear in experiments.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
#: Environment variables the worker sets for the child; ``env`` may not set them.
RESERVED_ENV = re.compile(r"(SIGOPT_|MULTITUNE_).*|CUDA_VISIBLE_DEVICES")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KEYS = ("command", "cwd", "env", "max_epochs", "config", "stop_grace_s", "continuable")
DEFAULT_STOP_GRACE_S = 10.0


class ObjectivesFileError(ValueError):
    """An ``objectives.yaml`` the worker cannot use; the message names the file and the key."""


@dataclass(frozen=True)
class ScriptObjective:
    """One script objective, validated."""

    name: str
    command: tuple[str, ...]
    #: Absolute working directory of the command.
    cwd: Path
    env: Mapping[str, str] = field(default_factory=dict)
    max_epochs: int = 1
    config: Mapping[str, Any] = field(default_factory=dict)
    stop_grace_s: float = DEFAULT_STOP_GRACE_S
    #: As `services.worker.objectives.Objective.continuable`.
    continuable: bool = False

    def run_config(self, experiment_config: Mapping[str, Any]) -> dict[str, Any]:
        """The config a run gets: the experiment's ``objective.config`` over this file's
        defaults, with ``max_epochs`` always present."""
        return {"max_epochs": self.max_epochs, **self.config, **experiment_config}


def child_path(env: Mapping[str, str], base: Mapping[str, str]) -> str:
    """``PATH`` of a script's child: ``env.PATH`` when the file sets it, else the worker's own
    interpreter directory first (so ``python`` is the worker's Python, as in an activated
    virtualenv), then the worker's ``PATH``."""
    if "PATH" in env:
        return env["PATH"]
    own = str(Path(sys.executable).parent)
    rest = base.get("PATH", os.defpath)
    return f"{own}{os.pathsep}{rest}" if rest else own


def load_objectives_file(
    path: Path, base_env: Mapping[str, str] | None = None
) -> dict[str, ScriptObjective]:
    """Parse and check ``path``; ``base_env`` (default: this process's) is the environment the
    commands will be looked up in. Raises `ObjectivesFileError`."""
    base = os.environ if base_env is None else base_env
    where = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ObjectivesFileError(f"{where}: cannot read: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ObjectivesFileError(f"{where}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise ObjectivesFileError(
            f"{where}: expected a mapping of objective names to their command, got {_kind(data)}"
        )
    folder = path.resolve().parent
    return {str(name): _objective(where, folder, name, spec, base) for name, spec in data.items()}


def _objective(
    where: str, folder: Path, name: object, spec: object, base: Mapping[str, str]
) -> ScriptObjective:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ObjectivesFileError(
            f"{where}: objective name {name!r}: use 1-100 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )

    def error(key: str, message: str) -> ObjectivesFileError:
        return ObjectivesFileError(f"{where}: {name}.{key}: {message}")

    if not isinstance(spec, dict):
        raise ObjectivesFileError(
            f"{where}: {name}: expected a mapping with at least 'command', got {_kind(spec)}"
        )
    unknown = sorted(str(k) for k in spec if k not in KEYS)
    if unknown:
        raise error(unknown[0], f"unknown key; expected some of {', '.join(KEYS)}")
    if "command" not in spec:
        raise error("command", "missing (a list of arguments, or a string)")
    command = _command(spec["command"], lambda m: error("command", m))
    cwd = _cwd(folder, spec.get("cwd"), lambda m: error("cwd", m))
    env = _env(spec.get("env"), lambda key, m: error(key, m))
    max_epochs = spec.get("max_epochs", 1)
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
        raise error("max_epochs", f"expected an integer >= 1, got {max_epochs!r}")
    config = spec.get("config", {})
    if not isinstance(config, dict):
        raise error("config", f"expected a mapping, got {_kind(config)}")
    if "max_epochs" in config:
        raise error("config.max_epochs", f"give it as {name}.max_epochs instead")
    grace = spec.get("stop_grace_s", DEFAULT_STOP_GRACE_S)
    if isinstance(grace, bool) or not isinstance(grace, int | float) or not 0 < grace <= 3600:
        raise error("stop_grace_s", f"expected seconds in (0, 3600], got {grace!r}")
    continuable = spec.get("continuable", False)
    if not isinstance(continuable, bool):
        raise error("continuable", f"expected true or false, got {continuable!r}")
    _check_executable(command[0], cwd, child_path(env, base), lambda m: error("command", m))
    return ScriptObjective(
        name=name,
        command=command,
        cwd=cwd,
        env=env,
        max_epochs=max_epochs,
        config={str(k): v for k, v in config.items()},
        stop_grace_s=float(grace),
        continuable=continuable,
    )


def _command(value: object, error: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        try:
            parts = shlex.split(value)
        except ValueError as exc:
            raise error(f"cannot split {value!r}: {exc}") from exc
    elif isinstance(value, list) and all(isinstance(p, str | int | float) for p in value):
        parts = [str(p) for p in value]
    else:
        raise error(f"expected a list of arguments or a string, got {_kind(value)}")
    if not parts or not parts[0]:
        raise error("is empty")
    return tuple(parts)


def _cwd(folder: Path, value: object, error: Any) -> Path:
    if value is None:
        return folder
    if not isinstance(value, str) or not value:
        raise error(f"expected a directory path, got {_kind(value)}")
    cwd = (folder / Path(value).expanduser()).resolve()
    if not cwd.is_dir():
        raise error(f"{value!r} is not a directory (resolved to {cwd})")
    return cwd


def _env(value: object, error: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise error("env", f"expected a mapping of variable names to strings, got {_kind(value)}")
    env = {}
    for key, item in value.items():
        if not isinstance(key, str) or not ENV_NAME.fullmatch(key):
            raise error(f"env.{key}", "not a valid environment variable name")
        if RESERVED_ENV.fullmatch(key):
            raise error(
                f"env.{key}",
                "set by the worker for every run (SIGOPT_*, MULTITUNE_*, CUDA_VISIBLE_DEVICES)",
            )
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise error(f"env.{key}", f"expected a string (quote it), got {_kind(item)}")
        env[key] = str(item)
    return env


def _check_executable(program: str, cwd: Path, path: str, error: Any) -> None:
    """The command's program must exist now: a typo is an error at worker start, not a failed
    run per suggestion."""
    if os.sep in program:
        candidate = cwd / program
        if not candidate.is_file() or not os.access(candidate, os.X_OK):
            raise error(f"{program!r} is not an executable file (in {cwd})")
    elif shutil.which(program, path=path) is None:
        raise error(f"{program!r} is not on the child's PATH ({path})")


def _kind(value: object) -> str:
    return "nothing" if value is None else type(value).__name__
