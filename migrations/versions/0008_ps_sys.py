"""dump_info: a dump's system facts for `sys` (one row a fact); task_info: what crash's ps
options read of each task_struct (times, last run, stack pointer, policy, rlimits, the
argument and environment pages), docs/schema.md

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

I64 = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def _dump_id():
    return sa.Column("dump_id", sa.Integer, sa.ForeignKey("dumps.id", ondelete="CASCADE"),
                     nullable=False)


def upgrade():
    op.create_table(
        "dump_info", _dump_id(),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text, nullable=False))
    op.create_index("ix_dump_info_pk", "dump_info", ["dump_id", "key"], unique=True)
    op.create_table(
        "task_info", _dump_id(),
        sa.Column("task", I64, nullable=False),
        *[sa.Column(c, I64) for c in ("parent", "start_time", "utime", "stime", "last_run", "kstackp")],
        sa.Column("policy", sa.Integer), sa.Column("prio", sa.Integer),
        sa.Column("rlim", sa.LargeBinary),
        *[sa.Column(c, I64) for c in ("arg_start", "arg_end", "env_start", "env_end")],
        sa.Column("args", sa.LargeBinary), sa.Column("env", sa.LargeBinary),
        sa.Column("args_error", sa.Text))
    op.create_index("ix_task_info_pk", "task_info", ["dump_id", "task"], unique=True)


def downgrade():
    op.drop_table("task_info")
    op.drop_table("dump_info")
