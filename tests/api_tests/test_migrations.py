"""Migrations on a database that already holds runs, both backends. 0003 (the AI module): the
upgrade keeps every row and fills each run's client and observation; the downgrade removes
only what 0002 cannot hold (runs outside experiments) and upgrading again works. 0005
(continuation): existing runs get no archive flag and no source, and the downgrade keeps them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine
from sqlalchemy import text

from services.api.db import MIGRATIONS_DIR
from services.api.db import make_engine
from tests import services


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        made = make_engine(f"sqlite:///{tmp_path / 'migrate.db'}")
        yield made
        made.dispose()
        return
    with services.postgres_database() as url:
        made = make_engine(url)
        yield made
        made.dispose()


def _migrate(engine: Engine, to: str, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, to)


def _rows(engine: Engine, sql: str) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql))]


def test_0003_up_down_and_up_again_with_data(engine: Engine) -> None:
    _migrate(engine, "0002")
    with engine.begin() as c:
        c.execute(text("INSERT INTO clients (id, name, created) VALUES (7, 'acme', 0)"))
        c.execute(
            text(
                "INSERT INTO experiments (id, client_id, name, state, definition,"
                " parallel_bandwidth, created, updated, design_cursor)"
                " VALUES (3, 7, 'e', 'active', '{}', 1, 0, 0, 0)"
            )
        )
        c.execute(
            text(
                "INSERT INTO suggestions (id, experiment_id, assignments, key, state, deleted,"
                " source, created, updated)"
                " VALUES (5, 3, '{}', 'k', 'closed', false, 'user', 0, 0)"
            )
        )
        c.execute(
            text(
                "INSERT INTO observations (id, experiment_id, suggestion_id,"
                ' exclusive_suggestion_id, assignments, key, cost, "values", failed, deleted,'
                " created, updated) VALUES (11, 3, 5, 5, '{}', 'k', 1.0, '[]', true, false, 0, 0)"
            )
        )
        c.execute(
            text(
                "INSERT INTO training_runs (id, experiment_id, suggestion_id, state, attempt,"
                " checkpoint_count, created, updated) VALUES (13, 3, 5, 'completed', 1, 1, 0, 0)"
            )
        )
        c.execute(
            text(
                'INSERT INTO checkpoints (id, training_run_id, attempt, "values", created)'
                " VALUES (17, 13, 1, '[]', 0)"
            )
        )

    _migrate(engine, "0003")
    assert _rows(
        engine, "SELECT id, client_id, observation_id, project_id FROM training_runs"
    ) == [(13, 7, 11, None)]
    assert _rows(engine, "SELECT id, project_id FROM experiments") == [(3, None)]
    assert _rows(engine, "SELECT deleted FROM training_runs") in ([(False,)], [(0,)])
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO projects (id, client_id, reference_id, name, created, updated)"
                " VALUES (1, 7, 'p', 'p', 0, 0)"
            )
        )
        c.execute(
            text(
                "INSERT INTO training_runs (id, client_id, project_id, state, attempt,"
                " checkpoint_count, created, updated, deleted)"
                " VALUES (19, 7, 1, 'running', 1, 1, 0, 0, false)"
            )
        )
        c.execute(
            text(
                'INSERT INTO checkpoints (id, training_run_id, attempt, "values", created)'
                " VALUES (23, 19, 1, '[]', 0)"
            )
        )
    if engine.dialect.name == "sqlite":  # foreign keys are enforced again after the upgrade
        with engine.begin() as c:
            assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1

    _migrate(engine, "0002", down=True)
    assert _rows(engine, "SELECT id, experiment_id FROM training_runs") == [(13, 3)]
    assert _rows(engine, "SELECT id FROM checkpoints") == [(17,)]
    _migrate(engine, "head")
    assert _rows(engine, "SELECT id, client_id FROM training_runs") == [(13, 7)]


def test_0005_adds_the_continuation_columns_to_existing_runs_and_goes_back(
    engine: Engine,
) -> None:
    _migrate(engine, "0004")
    with engine.begin() as c:
        c.execute(text("INSERT INTO clients (id, name, created) VALUES (7, 'acme', 0)"))
        c.execute(
            text(
                "INSERT INTO training_runs (id, client_id, state, attempt, checkpoint_count,"
                " created, updated, deleted) VALUES (13, 7, 'completed', 1, 2, 0, 0, false)"
            )
        )
    _migrate(engine, "0005")
    assert _rows(engine, "SELECT id, has_checkpoint_archive, continues_id FROM training_runs") in (
        [(13, False, None)],
        [(13, 0, None)],
    )
    with engine.begin() as c:
        c.execute(
            text("UPDATE training_runs SET has_checkpoint_archive = true, continues_id = 13")
        )
    _migrate(engine, "0004", down=True)
    assert _rows(engine, "SELECT id, checkpoint_count FROM training_runs") == [(13, 2)]
    _migrate(engine, "head")
    assert _rows(engine, "SELECT continues_id FROM training_runs") == [(None,)]
