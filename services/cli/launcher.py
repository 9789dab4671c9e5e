"""``multitune up`` and ``multitune demo`` (issue 3 fills these in)."""

from __future__ import annotations

COMMANDS: list = []
