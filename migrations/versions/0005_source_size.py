"""dumps.source_size: the dump file's size at ingest, so `vmdex ingest DIR` can tell a
dump it already holds (same source_path and size) from a new or rewritten one

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

I64 = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    # A plain ADD COLUMN on every engine (batch mode would rebuild `dumps` under its views).
    op.add_column('dumps', sa.Column('source_size', I64, nullable=True))
    op.create_index('ix_dumps_source', 'dumps', ['source_path', 'source_size'])


def downgrade():
    op.drop_index('ix_dumps_source', table_name='dumps')
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('ALTER TABLE dumps DROP COLUMN source_size')   # SQLite >= 3.35
    else:
        op.drop_column('dumps', 'source_size')
