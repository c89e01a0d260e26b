"""dumps.kernel_source: where the kernel this dump was ingested with was read ("vmlinux" or
"dump"), kept with the dump: a later ingest that finds the vmlinux replaces the kernel
row, not what each earlier dump was made from. NULL on rows written before (their
kernel row's source says it)

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    # A plain ADD COLUMN on every engine (batch mode would rebuild `dumps` under its views).
    op.add_column("dumps", sa.Column("kernel_source", sa.String(16), nullable=True))


def downgrade():
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE dumps DROP COLUMN kernel_source")   # SQLite >= 3.35
    else:
        op.drop_column("dumps", "kernel_source")
