"""ai module: projects, AI experiments and runs tracked by clients

Revision ID: 0003
Revises: 0002

Projects (per client); an experiment may belong to one and be an AI experiment (``ai``); a
training run gets its client, project, observation, archive flag and tracked ``data``, and may
exist outside any experiment (``experiment_id`` and ``suggestion_id`` become nullable).

The downgrade deletes runs outside experiments (and their checkpoints): 0002 has no place for
them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


@contextmanager
def _foreign_keys_off_on_sqlite() -> Iterator[None]:
    """SQLite drops a NOT NULL or adds a foreign key by copying the table, and dropping the old
    copy of a table that other tables reference fails while foreign keys are enforced. The pragma
    that turns them off only acts outside a transaction, so what came before is committed first
    (Alembic treats SQLite DDL as non-transactional anyway); the keys are checked before they are
    turned back on."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        yield
        return
    raw = bind.connection.dbapi_connection
    assert raw is not None
    raw.commit()
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
        broken = raw.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"migration 0003 left broken foreign keys: {broken[:5]}")
        raw.commit()
    finally:
        raw.execute("PRAGMA foreign_keys=ON")


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("reference_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("client_id", "reference_id", name="uq_projects_client_reference"),
    )
    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_projects_client_id"), ["client_id"], unique=False)

    with _foreign_keys_off_on_sqlite():
        with op.batch_alter_table("experiments", schema=None) as batch_op:
            batch_op.add_column(sa.Column("project_id", sa.Integer(), nullable=True))
            batch_op.add_column(
                sa.Column("ai", sa.Boolean(), server_default=sa.false(), nullable=False)
            )
            batch_op.create_index(
                batch_op.f("ix_experiments_project_id"), ["project_id"], unique=False
            )
            batch_op.create_foreign_key(
                "fk_experiments_project_id", "projects", ["project_id"], ["id"]
            )

        with op.batch_alter_table("training_runs", schema=None) as batch_op:
            batch_op.add_column(sa.Column("client_id", sa.Integer(), nullable=True))
            batch_op.add_column(sa.Column("project_id", sa.Integer(), nullable=True))
            batch_op.add_column(sa.Column("observation_id", sa.Integer(), nullable=True))
            batch_op.add_column(
                sa.Column("deleted", sa.Boolean(), server_default=sa.false(), nullable=False)
            )
            batch_op.add_column(sa.Column("data", sa.JSON(), nullable=True))
        op.execute(
            "UPDATE training_runs SET client_id = (SELECT experiments.client_id FROM experiments"
            " WHERE experiments.id = training_runs.experiment_id)"
        )
        # A run's observation, as the API showed it so far: its suggestion's live one.
        op.execute(
            "UPDATE training_runs SET observation_id = (SELECT observations.id FROM observations"
            " WHERE observations.exclusive_suggestion_id = training_runs.suggestion_id)"
        )
        with op.batch_alter_table("training_runs", schema=None) as batch_op:
            batch_op.alter_column("client_id", existing_type=sa.Integer(), nullable=False)
            batch_op.alter_column("experiment_id", existing_type=sa.Integer(), nullable=True)
            batch_op.alter_column("suggestion_id", existing_type=sa.Integer(), nullable=True)
            batch_op.create_index(
                batch_op.f("ix_training_runs_client_id"), ["client_id"], unique=False
            )
            batch_op.create_index(
                batch_op.f("ix_training_runs_project_id"), ["project_id"], unique=False
            )
            batch_op.create_foreign_key(
                "fk_training_runs_client_id", "clients", ["client_id"], ["id"]
            )
            batch_op.create_foreign_key(
                "fk_training_runs_project_id", "projects", ["project_id"], ["id"]
            )
            batch_op.create_foreign_key(
                "fk_training_runs_observation_id", "observations", ["observation_id"], ["id"]
            )


def downgrade() -> None:
    with _foreign_keys_off_on_sqlite():
        op.execute(
            "DELETE FROM checkpoints WHERE training_run_id IN"
            " (SELECT id FROM training_runs WHERE experiment_id IS NULL OR suggestion_id IS NULL)"
        )
        op.execute(
            "DELETE FROM training_runs WHERE experiment_id IS NULL OR suggestion_id IS NULL"
        )
        with op.batch_alter_table("training_runs", schema=None) as batch_op:
            batch_op.drop_constraint("fk_training_runs_observation_id", type_="foreignkey")
            batch_op.drop_constraint("fk_training_runs_project_id", type_="foreignkey")
            batch_op.drop_constraint("fk_training_runs_client_id", type_="foreignkey")
            batch_op.drop_index(batch_op.f("ix_training_runs_project_id"))
            batch_op.drop_index(batch_op.f("ix_training_runs_client_id"))
            batch_op.alter_column("suggestion_id", existing_type=sa.Integer(), nullable=False)
            batch_op.alter_column("experiment_id", existing_type=sa.Integer(), nullable=False)
            batch_op.drop_column("data")
            batch_op.drop_column("deleted")
            batch_op.drop_column("observation_id")
            batch_op.drop_column("project_id")
            batch_op.drop_column("client_id")

        with op.batch_alter_table("experiments", schema=None) as batch_op:
            batch_op.drop_constraint("fk_experiments_project_id", type_="foreignkey")
            batch_op.drop_index(batch_op.f("ix_experiments_project_id"))
            batch_op.drop_column("ai")
            batch_op.drop_column("project_id")

    with op.batch_alter_table("projects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_projects_client_id"))
    op.drop_table("projects")
