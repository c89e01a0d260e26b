"""kernels.source: where a kernel's layouts and symbols were read, "vmlinux" (its DWARF
and .symtab) or "dump" (the kernel's BTF and kallsyms in the dump's memory); NULL on rows
written before, which were all read from a vmlinux

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    # A plain ADD COLUMN on every engine (batch mode would rebuild `kernels` under its views).
    op.add_column("kernels", sa.Column("source", sa.String(16), nullable=True))


def downgrade():
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE kernels DROP COLUMN source")   # SQLite >= 3.35
    else:
        op.drop_column("kernels", "source")
