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
    with op.batch_alter_table("kernels") as batch:
        batch.add_column(sa.Column("source", sa.String(16)))


def downgrade():
    with op.batch_alter_table("kernels") as batch:
        batch.drop_column("source")
