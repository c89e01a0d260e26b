"""Write one walked dump into the index: a single transaction, bulk executemany, no ORM.

The old dump of the same name (if any) is deleted in the same transaction, so readers see
either the old copy or the complete new one, never a mix and never a half-written dump.
"""
from __future__ import annotations

import itertools
from datetime import datetime, timezone

import numpy as np
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from vmdex.indexer import schema as S
from vmdex.indexer.arch.base import to_signed
from vmdex.indexer.errors import read_cause
from vmdex.indexer.image import DumpImage
from vmdex.indexer.walk.parallel import DropMm
from vmdex.indexer.walk.smaps import SmapsPart
from vmdex.indexer.walk.smaps_ingest import COLUMNS as SMAPS_COLUMNS

BATCH = 20000
RUN_COLUMNS = ["dump_id", "mm", "vma_seq", "va", "npages", "level", "kind", "pa", "swap_type",
               "swap_offset", "pte"]


def _i64(a: np.ndarray) -> list[int]:
    """uint64 array → Python ints of the two's-complement int64 (the stored form)."""
    return a.astype(np.uint64).view(np.int64).tolist()


def _run_rows(dump_id: int, mm: int, r):
    """page_runs rows of one chunk: the columns built whole (NULLs by mask), then zipped,
    instead of a Python test per row and column."""
    n = len(r)
    swap = r.kind != 0
    pa = np.array(_i64(r.pa), dtype=object)
    pa[swap] = None
    st = np.array(r.swap_type.tolist(), dtype=object)
    so = np.array(r.swap_offset.tolist(), dtype=object)
    st[~swap] = None
    so[~swap] = None
    return zip(itertools.repeat(dump_id, n), itertools.repeat(to_signed(mm), n),
               r.vma_index.tolist(), _i64(r.va), r.npages.tolist(), r.level.tolist(),
               r.kind.tolist(), pa.tolist(), st.tolist(), so.tolist(), _i64(r.pte))


def kernel_row(conn: Connection, build_id: str):
    return conn.execute(select(S.kernels.c.id, S.kernels.c.types_json)
                        .where(S.kernels.c.build_id == build_id)).first()


def cached_kernel(engine: Engine, build_id: str):
    """(types_json, symtab bytes, source) cached for this build id, or None; source is
    where they were read: "vmlinux" or "dump" (indexer.kernel.source)."""
    with engine.connect() as conn:
        row = conn.execute(select(S.kernels.c.types_json, S.kernels.c.symtab,
                                  S.kernels.c.source)
                           .where(S.kernels.c.build_id == build_id)).first()
    return (row[0], bytes(row[1]), row[2] or "vmlinux") if row else None


def known_kernel(engine: Engine, build_id: str | None, release: str | None) -> str | None:
    """The build id of the cached kernel a dump needs, if the index holds it: by the dump's
    build id, or (a dump without one) by release when exactly one build has that release."""
    with engine.connect() as conn:
        if build_id:
            return conn.execute(select(S.kernels.c.build_id)
                                .where(S.kernels.c.build_id == build_id)).scalar()
        if not release:
            return None
        rows = conn.execute(select(S.kernels.c.build_id)
                            .where(S.kernels.c.release == release)).scalars().all()
    return rows[0] if len(rows) == 1 else None


def kernel_source(engine: Engine, build_id: str) -> str | None:
    """The vmlinux a cached kernel was first read from (absolute path), as the first dump
    ingested with it recorded (dump_info `kernel_file`); None when no dump says."""
    with engine.connect() as conn:
        return conn.execute(
            select(S.dump_info.c.value)
            .select_from(S.dump_info.join(S.dumps, S.dumps.c.id == S.dump_info.c.dump_id)
                         .join(S.kernels, S.kernels.c.id == S.dumps.c.kernel_id))
            .where(S.kernels.c.build_id == build_id, S.dump_info.c.key == "kernel_file")
            .order_by(S.dumps.c.id).limit(1)).scalar()


def dump_from_source(engine: Engine, source_path: str, size: int) -> str | None:
    """The name of a dump already ingested from this file (same path, same size)."""
    with engine.connect() as conn:
        return conn.execute(select(S.dumps.c.name).where(
            S.dumps.c.source_path == source_path, S.dumps.c.source_size == size)).scalar()


def store_kernel(engine: Engine, build_id: str, release: str, types_json: str,
                 symtab: bytes, source: str = "vmlinux", replace: bool = False) -> int:
    """Cache a kernel's layouts and symbols under its build id (once per kernel; `replace`
    puts a fuller reading in place of the cached one: a vmlinux's for a dump's, or a newer
    vmdex's). `source`: where they were read, "vmlinux" or "dump"."""
    with engine.begin() as conn:
        row = kernel_row(conn, build_id)
        if row:
            if replace:
                conn.execute(update(S.kernels).where(S.kernels.c.id == row.id).values(
                    types_json=types_json, symtab=symtab, source=source))
            return row.id
        try:
            with conn.begin_nested():
                return conn.execute(insert(S.kernels).values(
                    build_id=build_id, release=release, types_json=types_json,
                    symtab=symtab, source=source)).inserted_primary_key[0]
        except IntegrityError:   # another ingest cached the same kernel first
            return kernel_row(conn, build_id).id


def _delete_dump(conn: Connection, dump_id: int) -> None:
    for t in S.BULK_TABLES:
        conn.execute(delete(t).where(t.c.dump_id == dump_id))
    conn.execute(delete(S.dumps).where(S.dumps.c.id == dump_id))


def remove_dump(engine: Engine, name: str) -> bool:
    with engine.begin() as conn:
        old = conn.execute(select(S.dumps.c.id).where(S.dumps.c.name == name)).scalar()
        if old is None:
            return False
        _delete_dump(conn, old)
        return True


def _bulk(conn: Connection, table, rows) -> None:
    """Insert dict rows (all with the same keys)."""
    it = iter(rows)
    first = next(it, None)
    if first is None:
        return
    cols = list(first)
    _bulk_tuples(conn, table, cols, itertools.chain([tuple(first.values())],
                                                    (tuple(r.values()) for r in it)))


def _bulk_tuples(conn: Connection, table, cols: list[str], rows) -> None:
    """Insert tuple rows on the transaction's own DBAPI connection: PostgreSQL by COPY,
    SQLite by the driver's executemany of one prepared INSERT (SQLAlchemy's own executemany
    spends more time building per-row parameters than SQLite spends storing them)."""
    dbapi = conn.connection.driver_connection
    names = ", ".join(f'"{c}"' for c in cols)
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        with dbapi.cursor() as cur:
            with cur.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as cp:
                for r in rows:
                    cp.write_row(r)
        return
    sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join("?" * len(cols))})'
    cur = dbapi.cursor()
    try:
        it = iter(rows)
        while batch := list(itertools.islice(it, BATCH)):
            cur.executemany(sql, batch)
    finally:
        cur.close()


def store_dump(engine: Engine, img: DumpImage, kernel_id: int, seconds: float) -> int:
    """Write the dump in one transaction, walking each mm's page tables as its rows go in
    (`img.page_runs`, chunk by chunk), so the walk's memory is one chunk at a time."""
    vma_count = sum(len(m.vmas) for m in img.mms.values())
    with engine.begin() as conn:
        old = conn.execute(select(S.dumps.c.id).where(S.dumps.c.name == img.name)).scalar()
        if old is not None:
            _delete_dump(conn, old)
        p = img.arch
        dump_id = conn.execute(insert(S.dumps).values(
            name=img.name, kernel_id=kernel_id, source_path=img.source_path,
            source_size=img.source_size, format=img.format, kernel_source=img.kernel_source,
            compression=img.compression, release=img.release,
            ingested_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            ingest_seconds=round(seconds), kaslr_offset=to_signed(img.kaslr_offset),
            # page_offset: crash's IS_KVADDR threshold for -M (the direct-map base on both)
            phys_base=p.phys_base, page_offset=to_signed(p.kvaddr_floor()),
            paging_levels=p.levels, arch=p.name, page_size=p.page_size, cpus=img.cpus,
            paddr_prlen=img.paddr_prlen,
            ram_end=img.ram_end, ram_start=img.ram_start,
            task_state_names="\n".join(img.task_state_names) if img.task_state_names else None,
            section_size_bits=img.sparsemem[0], max_physmem_bits=img.sparsemem[1],
            default_task=to_signed(img.default_task),
            init_mm=to_signed(img.init_mm) if img.init_mm else None,
            swap_lines=img.swap is not None, swap_info_len=img.swap[0] if img.swap else 0,
            has_expand_upwards=img.has_expand_upwards, has_pmd_huge_pte=img.has_pmd_huge_pte,
            task_count=len(img.tasks), vma_count=vma_count, page_run_count=0,
            error_count=0)).inserted_primary_key[0]   # counts set below, after the walk

        _bulk(conn, S.tasks, (dict(
            dump_id=dump_id, seq=i, task=to_signed(t.addr), pid=t.pid, ppid=t.ppid, tgid=t.tgid,
            cpu=t.cpu, comm=t.comm, state=t.state, exit_state=t.exit_state, st=t.st,
            flags=t.flags, is_idle=t.is_idle, is_active=t.is_active, mm=to_signed(t.mm) if t.mm else None,
            rss_pages=img.rss.get(t.addr, 0)) for i, t in enumerate(img.tasks)))
        _bulk(conn, S.mms, (dict(
            dump_id=dump_id, mm=to_signed(m.addr), pgd=to_signed(m.pgd), total_vm=m.total_vm,
            map_count=m.map_count, mm_count=m.mm_count, raw=m.raw) for m in img.mms.values()))
        _bulk(conn, S.vmas, (dict(
            dump_id=dump_id, mm=to_signed(m.addr), seq=i, vma=to_signed(v.addr),
            vm_start=to_signed(v.start), vm_end=to_signed(v.end), vm_flags=to_signed(v.flags),
            vm_pgoff=to_signed(v.pgoff), file_path=v.path, raw=v.raw)
            for m in img.mms.values() for i, v in enumerate(m.vmas)))
        late = _drop_indexes_if_empty(conn, S.page_runs)
        for item in img.page_runs():
            if isinstance(item, SmapsPart):
                img.smaps.add(item)
                continue
            if isinstance(item, DropMm):   # walked again: what came for it so far is void
                if img.smaps:
                    img.smaps.drop(item.mm)
                img.run_count -= conn.execute(delete(S.page_runs).where(
                    S.page_runs.c.dump_id == dump_id,
                    S.page_runs.c.mm == to_signed(item.mm))).rowcount
                continue
            mm, r = item
            img.run_count += len(r)
            if not len(r):
                continue
            _bulk_tuples(conn, S.page_runs, RUN_COLUMNS, _run_rows(dump_id, mm, r))
        for ix in late:
            ix.create(conn)
        words = p.table_words()
        _bulk(conn, S.page_table_faults, (dict(
            dump_id=dump_id, mm=to_signed(mm), va_start=to_signed(f.va_start),
            va_end=to_signed(f.va_end), level=f.level, pa=f.pa, reason=f.reason,
            cause=f.cause or read_cause(f.reason), table_name=words.get(f.level, "pgd page"),
            address_kind=p.table_address(f.pa)[0], address=to_signed(p.table_address(f.pa)[1]))
            for mm, f in img.faults))
        if img.smaps:
            store_smaps(conn, dump_id, img)
        _bulk(conn, S.vma_faults, (dict(
            dump_id=dump_id, mm=to_signed(m.addr), seq=m.vma_fault[0],
            vma=to_signed(m.vma_fault[1]), address=to_signed(m.vma_fault[2]),
            cause=m.vma_fault[3]) for m in img.mms.values() if m.vma_fault))
        if img.swap:
            _bulk(conn, S.swap_devices, (dict(dump_id=dump_id, type=t, path=p)
                                         for t, p in img.swap[1].items()))
        _bulk(conn, S.pointer_symbols, (dict(dump_id=dump_id, address=to_signed(a), symbol=t)
                                         for a, t in img.pointer_symbols.items()))
        _bulk_tuples(conn, S.kernel_maps, ["dump_id", "va", "npages", "pa"], (
            (dump_id, to_signed(va), n, to_signed(pa)) for va, n, pa in img.kernel_maps))
        _bulk(conn, S.dump_info, (dict(dump_id=dump_id, key=k, value=v)
                                  for k, v in img.info.items()))
        _bulk(conn, S.task_info, (dict(row, dump_id=dump_id) for row in img.task_info))
        _bulk(conn, S.ingest_errors, (dict(dump_id=dump_id, message=e) for e in img.errors))
        conn.execute(update(S.dumps).where(S.dumps.c.id == dump_id).values(
            page_run_count=img.run_count, error_count=len(img.errors)))
    return dump_id


def _drop_indexes_if_empty(conn: Connection, table) -> list:
    """An empty SQLite table's indexes, dropped to be built again once its rows are in (the
    first dump of an index: building the page_runs indexes over 36 k runs at once costs
    about half of keeping them up to date run by run). Inside the dump's transaction, so
    a failed ingest leaves them as they were."""
    if conn.dialect.name != "sqlite" or \
            conn.execute(select(1).select_from(table).limit(1)).first() is not None:
        return []
    for ix in table.indexes:
        ix.drop(conn)
    return list(table.indexes)


def store_smaps(conn: Connection, dump_id: int, img: DumpImage) -> None:
    """The per-VMA smaps rows (indexer.walk.smaps_ingest) and the dump's line layout."""
    _bulk_tuples(conn, S.vma_smaps, SMAPS_COLUMNS, img.smaps.rows(dump_id, img.faults))
    conn.execute(insert(S.smaps_layouts).values(dump_id=dump_id, lines=img.smaps.layout))
