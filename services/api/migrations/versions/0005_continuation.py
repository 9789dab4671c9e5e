"""continuation: the run a training run continues, and whether a run stored a checkpoint
archive

Revision ID: 0005
Revises: 0004

Plain ``ADD COLUMN``s on both backends: ``continues_id`` has no foreign key, since SQLite adds
one only by copying ``training_runs``, which other tables reference (the API checks it).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "training_runs",
        sa.Column(
            "has_checkpoint_archive", sa.Boolean(), server_default=sa.false(), nullable=False
        ),
    )
    op.add_column("training_runs", sa.Column("continues_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("training_runs", "continues_id")
    op.drop_column("training_runs", "has_checkpoint_archive")
