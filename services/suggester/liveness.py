"""The suggester's liveness file: touched by every pass of its loop (at most once a second), so
that ``multitune health suggester`` (a container health check) can tell a loop that turns from
one that hangs. Light on purpose: the health check imports it without torch."""

from __future__ import annotations

import socket
import time
from pathlib import Path


def liveness_file(data_dir: Path, host: str | None = None) -> Path:
    """One file per host under the data dir, so suggesters of several hosts (or containers)
    sharing it do not mask each other."""
    return data_dir / "health" / f"suggester-{host or socket.gethostname()}"


class Liveness:
    """Touches ``path`` when `beat` is called, at most every ``interval_s``."""

    def __init__(self, path: Path, interval_s: float = 1.0) -> None:
        self.path = path
        self.interval_s = interval_s
        self._last = -float("inf")

    def beat(self) -> None:
        now = time.monotonic()
        if now - self._last < self.interval_s:
            return
        self._last = now
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
        except OSError:
            pass  # a read-only or full disk must not stop the loop; the check will say so
