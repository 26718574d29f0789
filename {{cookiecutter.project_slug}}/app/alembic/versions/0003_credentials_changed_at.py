"""When a user's credentials last changed: access tokens issued earlier are refused.

Revision ID: 0003
{%- if cookiecutter.use_b2_storage %}
Revises: 0002
{%- else %}
Revises: 0001
{%- endif %}
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
{%- if cookiecutter.use_b2_storage %}
down_revision: str | None = "0002"
{%- else %}
down_revision: str | None = "0001"
{%- endif %}
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("credentials_changed_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("credentials_changed_at")
