"""vma_smaps: each VMA's /proc/PID/smaps figures, computed at ingest; smaps_layouts: the
figure lines each dump's kernel prints; views v_smaps (one row per VMA, in kB) and
v_smaps_rollup (one row per process, as smaps_rollup sums it), docs/schema.md

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

I64 = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
FIGURES = ("resident", "pss", "pss_dirty", "pss_anon", "pss_file", "pss_shmem",
           "shared_clean", "shared_dirty", "private_clean", "private_dirty", "referenced",
           "anonymous", "ksm", "lazyfree", "anonymous_thp", "shmem_thp", "file_thp",
           "shared_hugetlb", "private_hugetlb", "swap", "swap_pss", "pss_locked")
PSS = {"pss", "pss_dirty", "pss_anon", "pss_file", "pss_shmem", "swap_pss", "pss_locked"}
# view column -> stored figure (the kB names smaps prints)
KB = (("rss_kb", "resident"), ("pss_kb", "pss"), ("pss_dirty_kb", "pss_dirty"),
      ("pss_anon_kb", "pss_anon"), ("pss_file_kb", "pss_file"), ("pss_shmem_kb", "pss_shmem"),
      ("shared_clean_kb", "shared_clean"), ("shared_dirty_kb", "shared_dirty"),
      ("private_clean_kb", "private_clean"), ("private_dirty_kb", "private_dirty"),
      ("referenced_kb", "referenced"), ("anonymous_kb", "anonymous"), ("ksm_kb", "ksm"),
      ("lazyfree_kb", "lazyfree"), ("anon_huge_pages_kb", "anonymous_thp"),
      ("shmem_pmd_mapped_kb", "shmem_thp"), ("file_pmd_mapped_kb", "file_thp"),
      ("shared_hugetlb_kb", "shared_hugetlb"), ("private_hugetlb_kb", "private_hugetlb"),
      ("swap_kb", "swap"), ("swap_pss_kb", "swap_pss"), ("locked_kb", "pss_locked"))
VIEWS = ("v_smaps_rollup", "v_smaps")


def _hex(dialect: str, expr: str) -> str:
    if dialect == "postgresql":
        return f"to_hex({expr})"
    return f"CASE WHEN {expr} IS NULL THEN NULL ELSE printf('%x', {expr}) END"


def _kb(total: str, figure: str) -> str:
    """The kernel's kB of a sum: >> 10 (and >> PSS_SHIFT first for the pss ones), as an
    integer on both engines (PostgreSQL's SUM of BIGINT is NUMERIC)."""
    div = (1 << 22) if figure in PSS else 1024
    return f"CAST(({total} - ({total}) % {div}) / {div} AS BIGINT)"


def _figures(agg: bool) -> str:
    cols = []
    for name, fig in KB:
        bit = 1 << FIGURES.index(fig)
        if agg:
            unknown = f"MAX(s.unknown & {bit})"
            value = _kb(f"SUM(s.{fig})", fig)
        else:
            unknown = f"(s.unknown & {bit})"
            value = _kb(f"s.{fig}", fig)
        cols.append(f"CASE WHEN {unknown} <> 0 THEN NULL ELSE {value} END AS {name}")
    uss_bits = (1 << FIGURES.index("private_clean")) | (1 << FIGURES.index("private_dirty"))
    pc, pd = ("SUM(s.private_clean)", "SUM(s.private_dirty)") if agg else \
        ("s.private_clean", "s.private_dirty")
    unknown = f"MAX(s.unknown & {uss_bits})" if agg else f"(s.unknown & {uss_bits})"
    cols.append(f"CASE WHEN {unknown} <> 0 THEN NULL ELSE "
                f"CAST(({pc} + {pd}) / 1024 AS BIGINT) END AS uss_kb")
    return ",\n       ".join(cols)


def view_sql(dialect: str) -> dict[str, str]:
    h = lambda e: _hex(dialect, e)  # noqa: E731
    return {
        "v_smaps": f"""
SELECT s.dump_id, d.name AS dump, d.release, t.pid, t.comm, {h('s.mm')} AS mm,
       s.mm AS mm_i64, s.vma_seq, {h('v.vm_start')} AS vm_start, {h('v.vm_end')} AS vm_end,
       (v.vm_end - v.vm_start) / 1024 AS size_kb, v.file_path, s.header,
       s.kernel_page_kb, s.mmu_page_kb,
       {_figures(False)},
       s.thp_eligible, s.protection_key, s.vmflags, s.unknown, s.reason
FROM vma_smaps s
JOIN dumps d ON d.id = s.dump_id
JOIN vmas v ON v.dump_id = s.dump_id AND v.mm = s.mm AND v.seq = s.vma_seq
LEFT JOIN tasks t ON t.dump_id = s.dump_id AND t.mm = s.mm AND t.pid = t.tgid""",
        "v_smaps_rollup": f"""
SELECT t.dump_id, d.name AS dump, d.release, t.pid, t.comm, {h('t.mm')} AS mm,
       t.mm AS mm_i64, COUNT(*) AS vmas,
       {_figures(True)},
       MAX(CASE WHEN s.unknown <> 0 THEN 1 ELSE 0 END) AS incomplete
FROM tasks t
JOIN dumps d ON d.id = t.dump_id
JOIN vma_smaps s ON s.dump_id = t.dump_id AND s.mm = t.mm
WHERE t.pid = t.tgid
GROUP BY t.dump_id, d.name, d.release, t.pid, t.comm, t.mm""",
    }


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
    for name, sql in view_sql(dialect).items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def downgrade():
    for name in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_table('smaps_layouts')
    op.drop_index('ix_vma_smaps_pk', table_name='vma_smaps')
    op.drop_table('vma_smaps')
