"""The SQL of the index's views, as each migration that (re)created them defined it.

A migration names the revision it uses (views_0002, views_0006, ...), so an old migration
keeps producing its own views when a later one changes them; HEAD_VIEWS is what a brand-new
index gets (indexer/db.py creates it without Alembic). No Alembic import here: the fast
path must not pay for it.
"""
from __future__ import annotations

RUN_PAGES = 512  # rows of page_numbers: indexer.walk.pages.MAX_RUN_PAGES

VIEWS_0002 = ("v_pages", "v_task_vmas", "v_vmas", "v_tasks", "v_dumps")
VIEWS_0007 = ("v_smaps_rollup", "v_smaps")

# vma_smaps' stored figures (migration 0007, indexer/schema.py)
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


def _hex(dialect: str, expr: str) -> str:
    """Hex text of a stored int64, NULL stays NULL (SQLite's printf would print 0)."""
    if dialect == "postgresql":
        return f"to_hex({expr})"
    return f"CASE WHEN {expr} IS NULL THEN NULL ELSE printf('%x', {expr}) END"


def views_0002(dialect: str) -> dict[str, str]:
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


def views_0006(dialect: str) -> dict[str, str]:
    """0002's views with the page size of each row's dump instead of 4096 (v_dumps also
    shows arch and page_size)."""
    out = {}
    for name, sql in views_0002(dialect).items():
        sql = sql.replace("(v.vm_end - v.vm_start) / 4096",
                          "(v.vm_end - v.vm_start) / d.page_size")
        sql = sql.replace("n.n * 4096", "n.n * d.page_size")
        sql = sql.replace("t.rss_pages * 4 AS rss_kb", "t.rss_pages * d.page_size / 1024 AS rss_kb")
        sql = sql.replace("m.total_vm * 4 AS total_vm_kb",
                          "m.total_vm * d.page_size / 1024 AS total_vm_kb")
        sql = sql.replace("d.cpus, d.paging_levels,",
                          "d.cpus, d.arch, d.page_size, d.paging_levels,")
        assert "4096" not in sql and "* 4 " not in sql, name
        out[name] = sql
    return out


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


def views_0007(dialect: str) -> dict[str, str]:
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


def head_views(dialect: str) -> dict[str, str]:
    """Every view of an index at HEAD, in an order that creates each after what it reads."""
    return {**views_0006(dialect), **views_0007(dialect)}
