"""vma_smaps: each VMA's /proc/PID/smaps figures, computed at ingest; smaps_layouts: the
figure lines each dump's kernel prints; views v_smaps (one row per VMA, in kB) and
v_smaps_rollup (one row per process, as smaps_rollup sums it), docs/schema.md

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa

from vmdex.migrations.views import FIGURES, VIEWS_0007, views_0007

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

I64 = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    dialect = op.get_bind().dialect.name
    op.create_table(
        'vma_smaps',
        sa.Column('dump_id', sa.Integer(), nullable=False),
        sa.Column('mm', I64, nullable=False),
        sa.Column('vma_seq', sa.Integer(), nullable=False),
        sa.Column('header', sa.Text(), nullable=True),
        sa.Column('kernel_page_kb', sa.Integer(), nullable=True),
        sa.Column('mmu_page_kb', sa.Integer(), nullable=True),
        sa.Column('thp_eligible', sa.SmallInteger(), nullable=True),
        sa.Column('protection_key', sa.SmallInteger(), nullable=True),
        sa.Column('vmflags', sa.Text(), nullable=False),
        *[sa.Column(f, I64, nullable=False) for f in FIGURES],
        sa.Column('unknown', I64, nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['dump_id'], ['dumps.id'], ondelete='CASCADE'),
    )
    op.create_index('ix_vma_smaps_pk', 'vma_smaps', ['dump_id', 'mm', 'vma_seq'], unique=True)
    op.create_table(
        'smaps_layouts',
        sa.Column('dump_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('lines', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['dump_id'], ['dumps.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('dump_id'),
    )
    for name, sql in views_0007(dialect).items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def downgrade():
    for name in VIEWS_0007:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_table('smaps_layouts')
    op.drop_index('ix_vma_smaps_pk', table_name='vma_smaps')
    op.drop_table('vma_smaps')
