"""The optimizer library: a pure function from experiment history to suggestions.

No I/O, clock, environment or logging configuration happens here; the suggester service owns
all of that and stores the JSON ``state`` each call returns. `suggest` dispatches on the
experiment's ``type``. What counts as "best" is `shared.best`, the one rule the API, the
dashboard and the optimizer's incumbent share.
"""

from __future__ import annotations

import warnings

# linear_operator (imported by BoTorch) decorates functions with ``torch.jit.script``, which
# torch 2.14 deprecates with a FutureWarning at import time; it says nothing about our use.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
    import linear_operator  # noqa: F401

from services.suggester.optimizer._acquisition import AcquisitionSettings  # noqa: E402
from services.suggester.optimizer._base import SOURCES  # noqa: E402
from services.suggester.optimizer._base import Candidate  # noqa: E402
from services.suggester.optimizer._base import Observation  # noqa: E402
from services.suggester.optimizer._base import Optimizer  # noqa: E402
from services.suggester.optimizer._base import Pending  # noqa: E402
from services.suggester.optimizer._base import SuggestResult  # noqa: E402
from services.suggester.optimizer._continuation import Runs  # noqa: E402
from services.suggester.optimizer._grid import GridOptimizer  # noqa: E402
from services.suggester.optimizer._model import FitSettings  # noqa: E402
from services.suggester.optimizer._multitask import BayesSettings  # noqa: E402
from services.suggester.optimizer._multitask import MultitaskOptimizer  # noqa: E402
from services.suggester.optimizer._policy import PolicySettings  # noqa: E402
from services.suggester.optimizer._random import RandomOptimizer  # noqa: E402
from services.suggester.optimizer._suggest import optimizer_for  # noqa: E402
from services.suggester.optimizer._suggest import suggest  # noqa: E402

__all__ = [
    "SOURCES",
    "AcquisitionSettings",
    "BayesSettings",
    "Candidate",
    "FitSettings",
    "GridOptimizer",
    "MultitaskOptimizer",
    "Observation",
    "Optimizer",
    "Pending",
    "PolicySettings",
    "RandomOptimizer",
    "Runs",
    "SuggestResult",
    "optimizer_for",
    "suggest",
]
