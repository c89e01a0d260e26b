"""initial schema

Revision ID: 0001
Revises: 
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('kernels',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('build_id', sa.String(length=80), nullable=False),
    sa.Column('release', sa.String(length=200), nullable=False),
    sa.Column('types_json', sa.Text(), nullable=False),
    sa.Column('symtab', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('build_id')
    )
    op.create_table('dumps',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('kernel_id', sa.Integer(), nullable=False),
    sa.Column('source_path', sa.Text(), nullable=False),
    sa.Column('format', sa.String(length=40), nullable=False),
    sa.Column('compression', sa.String(length=40), nullable=False),
    sa.Column('release', sa.String(length=200), nullable=False),
    sa.Column('ingested_at', sa.String(length=40), nullable=False),
    sa.Column('ingest_seconds', sa.Integer(), nullable=True),
    sa.Column('kaslr_offset', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('phys_base', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('page_offset', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('paging_levels', sa.SmallInteger(), nullable=False),
    sa.Column('cpus', sa.Integer(), nullable=False),
    sa.Column('paddr_prlen', sa.SmallInteger(), nullable=False),
    sa.Column('default_task', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('init_mm', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('swap_lines', sa.Boolean(), nullable=False),
    sa.Column('swap_info_len', sa.Integer(), nullable=False),
    sa.Column('has_expand_upwards', sa.Boolean(), nullable=False),
    sa.Column('has_pmd_huge_pte', sa.Boolean(), nullable=False),
    sa.Column('task_count', sa.Integer(), nullable=False),
    sa.Column('vma_count', sa.Integer(), nullable=False),
    sa.Column('page_run_count', sa.Integer(), nullable=False),
    sa.Column('error_count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['kernel_id'], ['kernels.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('ingest_errors',
    sa.Column('dump_id', sa.Integer(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['dump_id'], ['dumps.id'], ondelete='CASCADE')
    )
    op.create_table('mms',
    sa.Column('dump_id', sa.Integer(), nullable=False),
    sa.Column('mm', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('pgd', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('total_vm', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('map_count', sa.Integer(), nullable=False),
    sa.Column('mm_count', sa.Integer(), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['dump_id'], ['dumps.id'], ondelete='CASCADE')
    )
    with op.batch_alter_table('mms', schema=None) as batch_op:
        batch_op.create_index('ix_mms_pgd', ['dump_id', 'pgd'], unique=False)
        batch_op.create_index('ix_mms_pk', ['dump_id', 'mm'], unique=True)

    op.create_table('page_runs',
    sa.Column('dump_id', sa.Integer(), nullable=False),
    sa.Column('mm', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('vma_seq', sa.Integer(), nullable=False),
    sa.Column('va', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('npages', sa.Integer(), nullable=False),
    sa.Column('level', sa.SmallInteger(), nullable=False),
    sa.Column('kind', sa.SmallInteger(), nullable=False),
    sa.Column('pa', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('swap_type', sa.Integer(), nullable=True),
    sa.Column('swap_offset', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('pte', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['dump_id'], ['dumps.id'], ondelete='CASCADE')
    )
    with op.batch_alter_table('page_runs', schema=None) as batch_op:
        batch_op.create_index('ix_page_runs_pa', ['dump_id', 'pa'], unique=False)
        batch_op.create_index('ix_page_runs_swap', ['dump_id', 'swap_offset'], unique=False)
        batch_op.create_index('ix_page_runs_va', ['dump_id', 'mm', 'va'], unique=False)

    op.create_table('page_table_faults',
    sa.Column('dump_id', sa.Integer(), nullable=False),
    sa.Column('mm', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('va_start', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('va_end', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('level', sa.SmallInteger(), nullable=False),
    sa.Column('pa', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['dump_id'], ['dumps.id'], ondelete='CASCADE')
    )
    with op.batch_alter_table('page_table_faults', schema=None) as batch_op:
        batch_op.create_index('ix_pt_faults', ['dump_id', 'mm', 'va_start'], unique=False)

    op.create_table('swap_devices',
    sa.Column('dump_id', sa.Integer(), nullable=False),
    sa.Column('type', sa.Integer(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['dump_id'], ['dumps.id'], ondelete='CASCADE')
    )
    with op.batch_alter_table('swap_devices', schema=None) as batch_op:
        batch_op.create_index('ix_swap_devices_pk', ['dump_id', 'type'], unique=True)

    op.create_table('tasks',
    sa.Column('dump_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('task', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('ppid', sa.Integer(), nullable=False),
    sa.Column('tgid', sa.Integer(), nullable=False),
    sa.Column('cpu', sa.Integer(), nullable=False),
    sa.Column('comm', sa.String(length=64), nullable=False),
    sa.Column('state', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('exit_state', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('st', sa.String(length=4), nullable=False),
    sa.Column('flags', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('is_idle', sa.Boolean(), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('mm', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('rss_pages', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['dump_id'], ['dumps.id'], ondelete='CASCADE')
    )
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index('ix_tasks_mm', ['dump_id', 'mm'], unique=False)
        batch_op.create_index('ix_tasks_pid', ['dump_id', 'pid'], unique=False)
        batch_op.create_index('ix_tasks_pk', ['dump_id', 'seq'], unique=True)
        batch_op.create_index('ix_tasks_task', ['dump_id', 'task'], unique=False)

    op.create_table('vmas',
    sa.Column('dump_id', sa.Integer(), nullable=False),
    sa.Column('mm', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('vma', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('vm_start', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('vm_end', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('vm_flags', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('vm_pgoff', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('file_path', sa.Text(), nullable=True),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['dump_id'], ['dumps.id'], ondelete='CASCADE')
    )
    with op.batch_alter_table('vmas', schema=None) as batch_op:
        batch_op.create_index('ix_vmas_flags', ['dump_id', 'vm_flags'], unique=False)
        batch_op.create_index('ix_vmas_pk', ['dump_id', 'mm', 'seq'], unique=True)
        batch_op.create_index('ix_vmas_vma', ['dump_id', 'vma'], unique=False)



def downgrade():
    with op.batch_alter_table('vmas', schema=None) as batch_op:
        batch_op.drop_index('ix_vmas_vma')
        batch_op.drop_index('ix_vmas_pk')
        batch_op.drop_index('ix_vmas_flags')

    op.drop_table('vmas')
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_task')
        batch_op.drop_index('ix_tasks_pk')
        batch_op.drop_index('ix_tasks_pid')
        batch_op.drop_index('ix_tasks_mm')

    op.drop_table('tasks')
    with op.batch_alter_table('swap_devices', schema=None) as batch_op:
        batch_op.drop_index('ix_swap_devices_pk')

    op.drop_table('swap_devices')
    with op.batch_alter_table('page_table_faults', schema=None) as batch_op:
        batch_op.drop_index('ix_pt_faults')

    op.drop_table('page_table_faults')
    with op.batch_alter_table('page_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_page_runs_va')
        batch_op.drop_index('ix_page_runs_swap')
        batch_op.drop_index('ix_page_runs_pa')

    op.drop_table('page_runs')
    with op.batch_alter_table('mms', schema=None) as batch_op:
        batch_op.drop_index('ix_mms_pk')
        batch_op.drop_index('ix_mms_pgd')

    op.drop_table('mms')
    op.drop_table('ingest_errors')
    op.drop_table('dumps')
    op.drop_table('kernels')
