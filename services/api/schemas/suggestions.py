"""Suggestion and queued-suggestion bodies."""

from __future__ import annotations

from typing import Any
from typing import Literal

from services.api.schemas.common import Metadata
from services.api.schemas.common import PageQuery
from services.api.schemas.common import StrictModel
from services.api.schemas.common import TaskRef
from services.api.schemas.common import examples
from shared.states import StateFilter
from shared.states import SuggestionState


class SuggestionCreate(StrictModel):
    """Empty: the server picks. With ``assignments`` (+ ``task`` if multitask): stored as given."""

    model_config = examples({}, {"assignments": {"x": 0.5}})

    assignments: dict[str, Any] | None = None
    task: TaskRef | None = None
    metadata: Metadata = None


class SuggestionUpdate(StrictModel):
    model_config = examples({"metadata": {"note": "checked"}})

    metadata: Metadata = None


class SuggestionListQuery(PageQuery):
    state: SuggestionState | Literal[StateFilter.ALL] = StateFilter.ALL


class SuggestionDeleteQuery(PageQuery):
    state: Literal[SuggestionState.OPEN, StateFilter.ALL] = StateFilter.ALL


class QueuedSuggestionCreate(StrictModel):
    model_config = examples({"assignments": {"x": 0.25}})

    assignments: dict[str, Any]
    task: TaskRef | None = None
    metadata: Metadata = None
