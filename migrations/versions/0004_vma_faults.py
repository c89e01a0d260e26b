"""vma_faults: VMAs the dump lost, where crash's VMA walk stops (fill_vma_cache);
dumps.ram_end: where RAM ends (crash's "cannot find mem_map page");
dumps.task_state_names: the kernel's task_state_array (crash's state names and bits);
dumps.section_size_bits, max_physmem_bits: sparsemem geometry from VMCOREINFO

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

I64 = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    # A plain ADD COLUMN on every engine (batch mode would rebuild `dumps` under its views).
    op.add_column('dumps', sa.Column('ram_end', I64, nullable=True))
    op.add_column('dumps', sa.Column('task_state_names', sa.Text(), nullable=True))
    op.add_column('dumps', sa.Column('section_size_bits', sa.SmallInteger(), nullable=True))
    op.add_column('dumps', sa.Column('max_physmem_bits', sa.SmallInteger(), nullable=True))
    op.create_table(
        'vma_faults',
        sa.Column('dump_id', sa.Integer(), nullable=False),
        sa.Column('mm', I64, nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('vma', I64, nullable=False),
        sa.Column('address', I64, nullable=False),
        sa.Column('cause', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['dump_id'], ['dumps.id'], ondelete='CASCADE'),
    )
    op.create_index('ix_vma_faults', 'vma_faults', ['dump_id', 'mm', 'seq'])


def downgrade():
    if op.get_bind().dialect.name == 'sqlite':
        for col in ('max_physmem_bits', 'section_size_bits', 'task_state_names', 'ram_end'):
            op.execute(f'ALTER TABLE dumps DROP COLUMN {col}')   # SQLite >= 3.35
    else:
        for col in ('max_physmem_bits', 'section_size_bits', 'task_state_names', 'ram_end'):
            op.drop_column('dumps', col)
    op.drop_index('ix_vma_faults', table_name='vma_faults')
    op.drop_table('vma_faults')
