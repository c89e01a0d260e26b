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


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

VIEWS = ("v_pages", "v_task_vmas", "v_vmas", "v_tasks", "v_dumps")
RUN_PAGES = 512  # indexer.walk.pages.MAX_RUN_PAGES


def _hex(dialect: str, expr: str) -> str:
    """Hex text of a stored int64, NULL stays NULL (SQLite's printf would print 0)."""
    if dialect == "postgresql":
        return f"to_hex({expr})"
    return f"CASE WHEN {expr} IS NULL THEN NULL ELSE printf('%x', {expr}) END"


def view_sql(dialect: str) -> dict[str, str]:
    h = lambda e: _hex(dialect, e)  # noqa: E731
    return {
        "v_dumps": f"""
SELECT d.id AS dump_id, d.name AS dump, d.release, k.build_id, d.source_path AS dump_file,
       d.format, d.compression, d.ingested_at, d.ingest_seconds, d.cpus, d.paging_levels,
       {h('d.kaslr_offset')} AS kaslr_offset, {h('d.phys_base')} AS phys_base,
       {h('d.page_offset')} AS page_offset,
       d.task_count, d.vma_count, d.page_run_count, d.error_count
FROM dumps d JOIN kernels k ON k.id = d.kernel_id""",
        "v_tasks": f"""
SELECT t.dump_id, d.name AS dump, d.release, t.seq, t.pid, t.ppid, t.tgid, t.cpu, t.comm,
       t.st, {h('t.task')} AS task, t.task AS task_i64, {h('t.mm')} AS mm, t.mm AS mm_i64,
       t.rss_pages, t.rss_pages * 4 AS rss_kb, m.total_vm AS total_vm_pages,
       m.total_vm * 4 AS total_vm_kb, m.map_count, {h('t.flags')} AS flags,
       t.is_idle, t.is_active
FROM tasks t
JOIN dumps d ON d.id = t.dump_id
LEFT JOIN mms m ON m.dump_id = t.dump_id AND m.mm = t.mm""",
        "v_vmas": f"""
SELECT v.dump_id, d.name AS dump, d.release, {h('v.mm')} AS mm, v.mm AS mm_i64, v.seq,
       {h('v.vma')} AS vma, v.vma AS vma_i64,
       {h('v.vm_start')} AS vm_start, {h('v.vm_end')} AS vm_end, {h('v.vm_flags')} AS vm_flags,
       v.vm_start AS vm_start_i64, v.vm_end AS vm_end_i64, v.vm_flags AS vm_flags_i64,
       v.vm_pgoff, (v.vm_end - v.vm_start) / 4096 AS pages,
       (v.vm_end - v.vm_start) / 1024 AS size_kb, v.file_path
FROM vmas v JOIN dumps d ON d.id = v.dump_id""",
        "v_task_vmas": f"""
SELECT t.dump_id, d.name AS dump, d.release, t.seq AS task_seq, t.pid, t.tgid, t.comm,
       {h('t.task')} AS task, t.task AS task_i64, {h('v.mm')} AS mm, v.mm AS mm_i64,
       v.seq AS vma_seq, {h('v.vma')} AS vma, v.vma AS vma_i64,
       {h('v.vm_start')} AS vm_start, {h('v.vm_end')} AS vm_end, {h('v.vm_flags')} AS vm_flags,
       v.vm_start AS vm_start_i64, v.vm_end AS vm_end_i64, v.vm_flags AS vm_flags_i64,
       v.vm_pgoff, (v.vm_end - v.vm_start) / 4096 AS pages, v.file_path
FROM tasks t
JOIN dumps d ON d.id = t.dump_id
JOIN vmas v ON v.dump_id = t.dump_id AND v.mm = t.mm""",
        "v_pages": f"""
SELECT r.dump_id, d.name AS dump, {h('r.mm')} AS mm, r.mm AS mm_i64, r.vma_seq,
       {h('r.va + n.n * 4096')} AS va, r.va + n.n * 4096 AS va_i64,
       CASE WHEN r.kind = 0 THEN 'present' ELSE 'swap' END AS kind,
       {h('r.pa + n.n * 4096')} AS pa, r.pa + n.n * 4096 AS pa_i64,
       r.swap_type, r.swap_offset + n.n AS swap_offset, s.path AS swap_device,
       r.level
FROM page_runs r
JOIN page_numbers n ON n.n < r.npages
JOIN dumps d ON d.id = r.dump_id
LEFT JOIN swap_devices s ON r.kind = 1 AND s.dump_id = r.dump_id AND s.type = r.swap_type""",
    }


def upgrade():
    dialect = op.get_bind().dialect.name
    op.create_table('page_numbers',
                    sa.Column('n', sa.Integer(), autoincrement=False, nullable=False),
                    sa.PrimaryKeyConstraint('n'))
    op.bulk_insert(sa.table('page_numbers', sa.column('n', sa.Integer())),
                   [{"n": i} for i in range(RUN_PAGES)])
    for name, sql in view_sql(dialect).items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def downgrade():
    for name in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_table('page_numbers')
