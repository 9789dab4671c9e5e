"""One blueprint per resource; `register` mounts them all."""

from __future__ import annotations

from flask import Flask

from services.api.dashboard import views as dashboard
from services.api.routes import aiexperiments
from services.api.routes import analytics
from services.api.routes import artifacts
from services.api.routes import checkpoint_archives
from services.api.routes import experiments
from services.api.routes import health
from services.api.routes import observations
from services.api.routes import projects
from services.api.routes import queued_suggestions
from services.api.routes import run_tokens
from services.api.routes import suggestions
from services.api.routes import tokens
from services.api.routes import training_runs
from services.api.routes import uploads


def register(app: Flask) -> None:
    app.register_blueprint(health.bp)
    for module in (experiments, suggestions, queued_suggestions, observations, training_runs):
        app.register_blueprint(module.bp)
    for module in (tokens, projects, aiexperiments):  # SigOpt's AI module
        app.register_blueprint(module.bp)
    for module in (analytics, artifacts, dashboard):
        app.register_blueprint(module.bp)
    for module in (uploads, run_tokens):  # files' bytes; run-scoped tokens
        app.register_blueprint(module.bp)
    app.register_blueprint(checkpoint_archives.bp)  # workers' checkpoint directories
