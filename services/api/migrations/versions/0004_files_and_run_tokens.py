"""files as the sigopt client uploads them (pending until the signed PUT), files of runs
without an experiment, run-scoped tokens

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        # A run tracked in a project only has no experiment.
        batch_op.alter_column("experiment_id", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), server_default="ready", nullable=False)
        )
        batch_op.add_column(sa.Column("content_md5", sa.String(length=24), nullable=True))
        batch_op.add_column(sa.Column("filename", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("upload_nonce", sa.String(length=64), nullable=True))
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("training_run_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("attempt", sa.Integer(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_tokens_training_run_id"), ["training_run_id"], unique=False
        )
        batch_op.create_foreign_key(
            "fk_tokens_training_run_id", "training_runs", ["training_run_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("tokens", schema=None) as batch_op:
        batch_op.drop_constraint("fk_tokens_training_run_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_tokens_training_run_id"))
        batch_op.drop_column("attempt")
        batch_op.drop_column("training_run_id")
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_column("upload_nonce")
        batch_op.drop_column("filename")
        batch_op.drop_column("content_md5")
        batch_op.drop_column("status")
        batch_op.alter_column("experiment_id", existing_type=sa.Integer(), nullable=False)
