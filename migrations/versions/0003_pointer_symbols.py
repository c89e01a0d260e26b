"""pointer_symbols: gdb's <symbol+off> for every pointer `vm -m`/`-v` prints, made at ingest

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'pointer_symbols',
        sa.Column('dump_id', sa.Integer(), nullable=False),
        sa.Column('address', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('symbol', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['dump_id'], ['dumps.id'], ondelete='CASCADE'),
    )
    op.create_index('ix_pointer_symbols', 'pointer_symbols', ['dump_id', 'address'], unique=True)


def downgrade():
    op.drop_index('ix_pointer_symbols', table_name='pointer_symbols')
    op.drop_table('pointer_symbols')
