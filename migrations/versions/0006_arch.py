"""dumps.arch and dumps.page_size: the machine a dump comes from (indexer.arch) and its page
size, which every page count and kB figure (query side, views) now takes from here;
page_table_faults.cause / table_name / address_kind / address: a failed table read as
stored codes and crash's own words (readmem's type string, memory type and address), so
the query side never parses message text nor knows the architecture; kernel_maps: the
kernel's own table mappings where crash's kvtop walks them (arm64 `vm -M`); dumps.ram_start:
where RAM begins (arm64: PHYS_OFFSET), below it crash finds no struct page

Revision ID: 0006
Revises: 0005
"""
import re

from alembic import op
import sqlalchemy as sa

from vmdex.migrations.views import VIEWS_0002, views_0002, views_0006

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

I64 = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
_ZLIB = re.compile(r"zlib: uncompress failed: Error (-?\d+)")


def _cause(reason: str) -> str:
    """indexer.errors.read_cause as of this migration (rows written before 0006)."""
    if reason.startswith("page excluded"):
        return "excluded"
    if "not in dump" in reason:
        return "absent"
    if "incomplete dump" in reason:
        return "incomplete"
    m = _ZLIB.search(reason)
    return f"zlib:{m.group(1)}" if m else "unreadable"


def _drop_views():
    for name in VIEWS_0002:
        op.execute(f"DROP VIEW IF EXISTS {name}")


def upgrade():
    bind = op.get_bind()
    _drop_views()
    # A plain ADD COLUMN on every engine (batch mode would rebuild the tables).
    op.add_column('dumps', sa.Column('arch', sa.String(16), nullable=False,
                                     server_default='x86_64'))
    op.add_column('dumps', sa.Column('page_size', sa.Integer(), nullable=False,
                                     server_default='4096'))
    op.add_column('dumps', sa.Column('ram_start', I64, nullable=True))
    for col, typ in (('cause', sa.Text()), ('table_name', sa.Text()),
                     ('address_kind', sa.Text()), ('address', I64)):
        op.add_column('page_table_faults', sa.Column(col, typ, nullable=True))
    # Rows of x86_64 dumps stored before 0006: crash's x86_64 words, physical addresses.
    rows = bind.execute(sa.text(
        "SELECT f.rowid AS rid, f.reason, f.level, f.pa, d.paging_levels FROM page_table_faults f "
        "JOIN dumps d ON d.id = f.dump_id") if bind.dialect.name == 'sqlite' else sa.text(
        "SELECT f.ctid::text AS rid, f.reason, f.level, f.pa, d.paging_levels "
        "FROM page_table_faults f JOIN dumps d ON d.id = f.dump_id")).fetchall()
    words = {1: "page table", 2: "pmd page", 3: "pud page"}
    for rid, reason, level, pa, levels in rows:
        what = words.get(level) or ("p4d page" if levels == 5 and level == 4 else "pgd page")
        where = "rowid = :rid" if bind.dialect.name == 'sqlite' else "ctid = CAST(:rid AS tid)"
        bind.execute(sa.text(
            "UPDATE page_table_faults SET cause = :c, table_name = :t, "
            f"address_kind = 'physical', address = :a WHERE {where}"),
            dict(c=_cause(reason), t=what, a=pa, rid=rid))
    op.create_table(
        'kernel_maps',
        sa.Column('dump_id', sa.Integer(), nullable=False),
        sa.Column('va', I64, nullable=False),
        sa.Column('npages', sa.Integer(), nullable=False),
        sa.Column('pa', I64, nullable=False),
        sa.ForeignKeyConstraint(['dump_id'], ['dumps.id'], ondelete='CASCADE'),
    )
    op.create_index('ix_kernel_maps', 'kernel_maps', ['dump_id', 'va'])
    for name, sql in views_0006(bind.dialect.name).items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def downgrade():
    _drop_views()
    op.drop_index('ix_kernel_maps', table_name='kernel_maps')
    op.drop_table('kernel_maps')
    cols = {'dumps': ('ram_start', 'page_size', 'arch'),
            'page_table_faults': ('address', 'address_kind', 'table_name', 'cause')}
    for table, names in cols.items():
        for col in names:
            if op.get_bind().dialect.name == 'sqlite':
                op.execute(f'ALTER TABLE {table} DROP COLUMN {col}')   # SQLite >= 3.35
            else:
                op.drop_column(table, col)
    for name, sql in views_0002(op.get_bind().dialect.name).items():
        op.execute(f"CREATE VIEW {name} AS {sql}")
