"""views for ad-hoc SQL across dumps (v_dumps, v_tasks, v_vmas, v_task_vmas, v_pages)

Revision ID: 0002
Revises: 0001

Kernel values are stored as two's-complement int64 (indexer/schema.py); the views add them
as hex text the way crash prints them (SQLite printf('%x', v), PostgreSQL to_hex(v): both
print the unsigned 64-bit pattern of a negative int64) next to the stored integer (`*_i64`).
v_pages expands page_runs into one row per 4 KiB page by joining the 0..511 table
page_numbers (a run never exceeds 512 pages). docs/schema.md documents every column.
"""
from alembic import op
import sqlalchemy as sa

from vmdex.migrations.views import RUN_PAGES, VIEWS_0002, views_0002

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    dialect = op.get_bind().dialect.name
    op.create_table('page_numbers',
                    sa.Column('n', sa.Integer(), autoincrement=False, nullable=False),
                    sa.PrimaryKeyConstraint('n'))
    op.bulk_insert(sa.table('page_numbers', sa.column('n', sa.Integer())),
                   [{"n": i} for i in range(RUN_PAGES)])
    for name, sql in views_0002(dialect).items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def downgrade():
    for name in VIEWS_0002:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_table('page_numbers')
