"""`vmdex sql`, the v_* views and the example queries of docs/schema.md, on SQLite and on
PostgreSQL, against an index holding every uncompressed fixture dump (the fleet fixtures).

Expected rows come from crash's own output in the fixtures (ps.txt, sys.txt, foreach-vm.txt,
foreach-vm-p.txt.gz, cases.json), never from vmdex.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path

import pytest

from tests import fixturedata as F
from tests.conftest import fleet_dumps, vmdex

REPO = Path(__file__).resolve().parent.parent
PAGE = 4096


# --- crash's output, parsed ------------------------------------------------------------------
PID_LINE = re.compile(r'^PID:\s+(\d+)\s+TASK:\s+([0-9a-f]+)\s+CPU:\s+(\d+)\s+COMMAND:\s+"(.*)"$')
PS_LINE = re.compile(r"^>?\s*(\d+)\s+(\d+)\s+(\d+)\s+([0-9a-f]+)\s+(\S\S)\s+\S+\s+(\d+)\s+(\d+)\s+(.*)$")


def parse_foreach_vm(text: str) -> list[dict]:
    """crash's `foreach vm [-p]`: tasks with mm, VMAs, and (with -p) every page line."""
    tasks, cur, vma, state = [], None, None, None
    for line in text.splitlines():
        m = PID_LINE.match(line)
        if m:
            cur = dict(pid=int(m[1]), task=m[2], comm=m[4], mm=None, vmas=[])
            tasks.append(cur)
            state = None
        elif not line.strip():
            state = None
        elif line.split()[:2] == ["MM", "PGD"]:
            state = "mm"
        elif state == "mm":
            mm = line.split()[0]
            cur["mm"] = None if mm == "0" else mm
            state = None
        elif line.split()[:2] == ["VMA", "START"]:
            state = "vma"
        elif line.split() == ["VIRTUAL", "PHYSICAL"]:
            state = "pages"
        elif state == "vma":
            parts = line.split(None, 4)
            vma = dict(vma=parts[0], start=parts[1], end=parts[2], flags=parts[3],
                       file=parts[4].rstrip() if len(parts) > 4 else "", pages=[])
            cur["vmas"].append(vma)
        elif state == "pages":
            parts = line.split()
            if parts[1] == "SWAP:":
                vma["pages"].append((parts[0], "swap", parts[2], int(parts[4])))
            elif parts[1] not in ("FILE:", "(not"):
                vma["pages"].append((parts[0], "present", parts[1], None))
    return tasks


@lru_cache(maxsize=None)
def foreach_vm(kernel: str) -> list[dict]:
    return parse_foreach_vm((F.oracle_dir(kernel) / "foreach-vm.txt").read_text())


@lru_cache(maxsize=None)
def foreach_vm_p(kernel: str) -> list[dict]:
    return parse_foreach_vm(gzip.open(F.oracle_dir(kernel) / "foreach-vm-p.txt.gz", "rt").read())


@lru_cache(maxsize=None)
def ps(kernel: str) -> list[tuple]:
    """(pid, task, comm as ps shows it, rss_kb) per line of ps.txt."""
    out = []
    for line in (F.oracle_dir(kernel) / "ps.txt").read_text().splitlines()[1:]:
        m = PS_LINE.match(line)
        assert m, line
        out.append((int(m[1]), m[4], m[8], int(m[7])))
    return out


def release(kernel: str) -> str:
    for line in (F.oracle_dir(kernel) / "sys.txt").read_text().splitlines():
        if line.strip().startswith("RELEASE:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no RELEASE in {kernel}'s sys.txt")


def cases(kernel: str) -> dict:
    return json.loads((F.oracle_dir(kernel) / "cases.json").read_text())


def fleet() -> list[tuple[str, str]]:
    """(dump name, kernel) of every dump in the fleet indexes, sorted by name."""
    return sorted((f"{k}/{v}", k) for k, v in fleet_dumps())


def unique_pages(kernel: str):
    """{(mm, va): (kind, pa-or-device, swap offset)}: foreach repeats an mm per thread."""
    pages = {}
    for t in foreach_vm_p(kernel):
        for v in t["vmas"]:
            for va, kind, where, off in v["pages"]:
                pages[(t["mm"], va)] = (kind, where, off)
    return pages


# --- the examples of docs/schema.md, and what crash's output says they return ----------------
def doc_examples() -> dict[str, str]:
    text = (REPO / "docs" / "schema.md").read_text()
    found = re.findall(r"<!-- example: (\w+) -->\s*```sql\n(.*?)```", text, re.S)
    return {name: sql.strip() for name, sql in found}


def expect_blob_mappers():
    rows = []
    for dump, k in fleet():
        for t in foreach_vm(k):
            n = sum(v["file"] == "/data/blob.bin" for v in t["vmas"])
            if n:
                rows.append((dump, t["pid"], t["comm"], n))
    return sorted(rows, key=lambda r: (r[0], r[1]))


def expect_largest_rss():
    best: dict[str, int] = {}
    dumps: dict[str, set] = defaultdict(set)
    for dump, k in fleet():
        for pid, task, comm, rss in ps(k):
            if comm.startswith("["):     # crash brackets tasks without an mm
                continue
            best[comm] = max(best.get(comm, 0), rss)
            dumps[comm].add(dump)
    return sorted(((c, best[c], len(dumps[c])) for c in best), key=lambda r: (-r[1], r[0]))


def expect_phys_page():
    pa = "43d4000"
    rows = []
    for dump, k in fleet():
        for t in foreach_vm_p(k):
            for v in t["vmas"]:
                rows += [(dump, t["pid"], t["comm"], va) for va, kind, where, _ in v["pages"]
                         if kind == "present" and where == pa]
    return sorted(rows, key=lambda r: (r[0], r[1], int(r[3], 16)))


def expect_swap_usage():
    rows = []
    for dump, k in fleet():
        per_dev = Counter(where for kind, where, _ in unique_pages(k).values() if kind == "swap")
        rows += [(dump, dev, n, n * 4) for dev, n in per_dev.items()]
    return sorted(rows)


def expect_vmas_per_release():
    per: dict[str, list] = {}
    for dump, k in fleet():
        n = len({(t["mm"], v["vma"]) for t in foreach_vm(k) for v in t["vmas"]})
        d = per.setdefault(release(k), [0, 0])
        d[0] += 1
        d[1] += n
    return sorted((r, d, n) for r, (d, n) in per.items())


def expect_shared_mappings():
    rows = []
    for dump, k in fleet():
        for t in foreach_vm(k):
            shared = [v for v in t["vmas"] if int(v["flags"], 16) & 0x80]
            if shared:
                pages = sum((int(v["end"], 16) - int(v["start"], 16)) // PAGE for v in shared)
                rows.append((dump, t["pid"], t["comm"], len(shared), pages))
    return sorted(rows, key=lambda r: (r[0], r[1]))


EXPECT = {
    "blob_mappers": expect_blob_mappers,
    "largest_rss": expect_largest_rss,
    "phys_page": expect_phys_page,
    "swap_usage": expect_swap_usage,
    "vmas_per_release": expect_vmas_per_release,
    "shared_mappings": expect_shared_mappings,
}


# --- running vmdex sql -------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "pg"])
def fleet_db(request):
    return request.getfixturevalue("fleet_sqlite" if request.param == "sqlite"
                                   else "fleet_pg_reader")


def sql_rows(db, statement: str) -> list[tuple]:
    p = vmdex("sql", "--format", "json", statement, db=db)
    assert p.returncode == 0, p.stderr.decode()
    return [tuple(r.values()) for r in json.loads(p.stdout)]


def sql_csv(db, statement: str) -> list[list[str]]:
    p = vmdex("sql", "--format", "csv", statement, db=db)
    assert p.returncode == 0, p.stderr.decode()
    return list(csv.reader(io.StringIO(p.stdout.decode())))


def test_examples_documented():
    assert set(doc_examples()) == set(EXPECT)
    assert len(EXPECT) >= 5


def test_expectations_are_not_empty():
    """Each example must select something on the fixtures, or it proves nothing."""
    for name, fn in EXPECT.items():
        assert fn(), name
    # ...and the cross-dump ones really span several dumps
    assert len({r[0] for r in expect_blob_mappers()}) == len(fleet()) > 1
    assert len({r[0] for r in expect_phys_page()}) >= 2


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_example_query(fleet_db, name):
    assert sql_rows(fleet_db, doc_examples()[name]) == EXPECT[name]()


# --- the views against crash's output, on both engines -----------------------------------------
def test_v_tasks_hex_matches_ps(fleet_db):
    got = defaultdict(list)
    for dump, pid, task, comm, mm, rss_kb in sql_rows(
            fleet_db, "SELECT dump, pid, task, comm, mm, rss_kb FROM v_tasks ORDER BY dump, seq"):
        got[dump].append((pid, task, comm if mm else f"[{comm}]", rss_kb))
    assert sorted(got) == [d for d, _ in fleet()]
    for dump, k in fleet():
        assert got[dump] == ps(k), dump


def test_v_task_vmas_match_foreach_vm(fleet_db):
    got = defaultdict(list)
    for dump, pid, task, vma, start, end, flags, path in sql_rows(
            fleet_db, "SELECT dump, pid, task, vma, vm_start, vm_end, vm_flags, file_path "
                      "FROM v_task_vmas ORDER BY dump, task_seq, vma_seq"):
        got[dump].append((pid, task, vma, start, end, flags, path or ""))
    for dump, k in fleet():
        want = [(t["pid"], t["task"], v["vma"], v["start"], v["end"], v["flags"], v["file"])
                for t in foreach_vm(k) for v in t["vmas"]]
        assert got[dump] == want, dump


def test_v_vmas_one_row_per_vma(fleet_db):
    got = Counter(r[0] for r in sql_rows(fleet_db, "SELECT dump FROM v_vmas"))
    for dump, k in fleet():
        assert got[dump] == len({(t["mm"], v["vma"]) for t in foreach_vm(k) for v in t["vmas"]})


def test_v_pages_match_foreach_vm_p(fleet_db):
    """Every present and swapped page crash prints, and nothing else, per dump."""
    rows = sql_csv(fleet_db, "SELECT dump, mm, va, kind, pa, swap_device, swap_offset "
                             "FROM v_pages")
    assert rows[0] == ["dump", "mm", "va", "kind", "pa", "swap_device", "swap_offset"]
    got = defaultdict(dict)
    for dump, mm, va, kind, pa, dev, off in rows[1:]:
        key = (mm, va)
        assert key not in got[dump], (dump, key)
        got[dump][key] = (kind, pa, None) if kind == "present" else (kind, dev, int(off))
    for dump, k in fleet():
        assert got[dump] == unique_pages(k), dump


def test_v_dumps(fleet_db):
    rows = sql_rows(fleet_db, "SELECT dump, release, task_count, kaslr_offset FROM v_dumps "
                              "ORDER BY dump")
    assert [r[0] for r in rows] == [d for d, _ in fleet()]
    for (dump, rel, ntasks, kaslr), (_, k) in zip(rows, fleet()):
        assert rel == release(k)
        assert ntasks == len(ps(k))
        assert re.fullmatch(r"[0-9a-f]+", kaslr)


def test_hex_of_negative_int64(fleet_db):
    """The 64-bit rule: a kernel address is a negative int64 whose hex is the address."""
    task = ps(F.kernels()[0])[2][1]          # a real kernel address from crash's ps
    s64 = int(task, 16) - (1 << 64)
    rows = sql_rows(fleet_db, f"SELECT DISTINCT task, task_i64 FROM v_tasks WHERE task_i64 = {s64}")
    assert rows == [(task, s64)]


# --- output formats ------------------------------------------------------------------------------
Q = "SELECT dump, pid, comm, task, mm, rss_kb FROM v_tasks WHERE pid < 3 ORDER BY dump, seq"


def test_formats_agree(fleet_db):
    js = sql_rows(fleet_db, Q)
    cs = sql_csv(fleet_db, Q)
    assert cs[0] == ["dump", "pid", "comm", "task", "mm", "rss_kb"]
    assert [tuple(r) for r in cs[1:]] == [tuple("" if v is None else str(v) for v in r)
                                          for r in js]
    p = vmdex("sql", Q, db=fleet_db)
    assert p.returncode == 0
    lines = p.stdout.decode().splitlines()
    assert lines[0].split() == ["dump", "pid", "comm", "task", "mm", "rss_kb"]
    assert set(lines[1].replace("  ", " ").split(" ")) == {"-" * n for n in
                                                          map(len, lines[1].split())}
    assert len(lines) == 2 + len(js)
    # aligned: every column starts at the same offset on every line
    starts = [m.start() for m in re.finditer(r"-+", lines[1])]
    for line, row in zip(lines[2:], js):
        assert line.startswith(str(row[0]))
        for s, v in zip(starts[2:4], row[2:4]):
            assert line[s:].startswith(str(v))
        assert "NULL" in line if row[4] is None else row[4] in line
    # the global --format option works as well
    p2 = vmdex("--format", "csv", "sql", Q, db=fleet_db)
    assert list(csv.reader(io.StringIO(p2.stdout.decode()))) == cs


def test_bad_sql_is_one_line(fleet_db):
    p = vmdex("sql", "SELECT * FROM no_such_table", db=fleet_db)
    assert p.returncode != 0
    err = p.stderr.decode()
    assert err.startswith("vmdex: sql: ") and err.count("\n") == 1, err


def test_no_index(tmp_path):
    p = vmdex("sql", "SELECT 1", db=tmp_path / "none.db")
    assert p.returncode != 0 and b"no index" in p.stderr
    assert not (tmp_path / "none.db").exists()


# --- read-only --------------------------------------------------------------------------------------
def fingerprint(db) -> str:
    """A hash of every table's rows and of the schema objects: changes if anything does."""
    from vmdex.indexer import schema as S
    from vmdex.query.conn import connect

    conn = connect(str(db))
    h = hashlib.sha256()
    try:
        for t in sorted(S.metadata.tables) + ["alembic_version"]:
            rows = conn.all(f"SELECT * FROM {t}")
            norm = sorted(repr(tuple(bytes(v) if isinstance(v, memoryview) else
                                     int(v) if isinstance(v, bool) else v for v in r))
                          for r in rows)
            h.update(f"{t}:{len(rows)}:".encode())
            for r in norm:
                h.update(r.encode())
        if conn.pyformat:
            objs = conn.all("SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n "
                            "ON n.oid = c.relnamespace WHERE n.nspname = 'public' ORDER BY 1")
        else:
            objs = conn.all("SELECT type, name, sql FROM sqlite_master ORDER BY name")
        h.update(repr(objs).encode())
    finally:
        conn.close()
    return h.hexdigest()


REFUSED = {
    "insert": "INSERT INTO dumps (name, kernel_id) SELECT 'x', kernel_id FROM dumps",
    "update": "UPDATE tasks SET pid = 0",
    "delete": "DELETE FROM page_runs",
    "drop": "DROP TABLE tasks",
    "drop-view": "DROP VIEW v_pages",
    "create": "CREATE TABLE notes (a INTEGER)",
    "create-index": "CREATE INDEX ix_notes ON tasks (comm)",
    "alter": "ALTER TABLE tasks ADD COLUMN x INTEGER",
    "attach": "ATTACH DATABASE '{tmp}/attached.db' AS other",
    "pragma-writable-schema": "PRAGMA writable_schema=1",
    "pragma-query-only-off": "PRAGMA query_only=0",
    "multi-statement": "SELECT 1; DELETE FROM tasks",
    "multi-select": "SELECT 1; SELECT 2",
    "begin": "BEGIN",
    "vacuum": "VACUUM",
    "replace": "REPLACE INTO page_numbers VALUES (0)",
    "cte-delete": "WITH x AS (DELETE FROM tasks RETURNING pid) SELECT * FROM x",
    "select-for-update": "SELECT * FROM tasks FOR UPDATE",
    "set-read-write": "SET TRANSACTION READ WRITE",
}
# Statements that are not even SQL on one engine fail as syntax errors there (still refused,
# still one line, still nothing written).
# The superuser is refused before its statement is sent, whatever the statement.
NOT_SQL = {"sqlite": {"cte-delete", "select-for-update", "set-read-write"},
           "pg-reader": {"attach", "pragma-writable-schema", "pragma-query-only-off", "replace"},
           "pg-superuser": set()}
FLEETS = {"sqlite": "fleet_sqlite", "pg-reader": "fleet_pg_reader", "pg-superuser": "fleet_pg"}


@pytest.fixture(scope="module", params=sorted(FLEETS))
def engine_and_db(request):
    """(engine, index, its fingerprint before any refused statement ran)."""
    db = request.getfixturevalue(FLEETS[request.param])
    return request.param, db, fingerprint(db)


@pytest.mark.parametrize("what", sorted(REFUSED))
def test_refused_and_unchanged(engine_and_db, what, tmp_path):
    engine, db, before = engine_and_db
    p = vmdex("sql", REFUSED[what].format(tmp=tmp_path), db=db)
    err = p.stderr.decode()
    assert p.returncode == 2, (p.returncode, err, p.stdout)
    assert p.stdout == b""
    assert err.startswith("vmdex: ") and err.count("\n") == 1, err
    if what not in NOT_SQL[engine]:
        assert err.startswith("vmdex: refused: "), err
    assert not (tmp_path / "attached.db").exists()
    assert fingerprint(db) == before


def test_read_pragmas_allowed(fleet_sqlite):
    names = [r[1] for r in sql_rows(fleet_sqlite, "PRAGMA table_info(tasks)")]
    assert names[:3] == ["dump_id", "seq", "task"]
    rows = sql_rows(fleet_sqlite, "SELECT name FROM pragma_table_info('vmas') ORDER BY cid")
    assert rows[0] == ("dump_id",)


def test_schema_version_heads_agree():
    from vmdex.indexer import db
    from vmdex.query import conn

    revs = []
    for f in (REPO / "migrations" / "versions").glob("*.py"):
        m = re.search(r"^revision = ['\"](\w+)['\"]", f.read_text(), re.M)
        if m:
            revs.append(m[1])
    assert db.HEAD == conn.HEAD == max(revs)


@pytest.mark.parametrize("engine_name", ["sqlite", "pg"])
def test_migration_0002_up_and_down(engine_name, tmp_path, request):
    """An index at 0001 gets the views when next opened; 0002 downgrades cleanly and comes
    back, on both engines."""
    from alembic import command
    from alembic.config import Config

    from vmdex.indexer.db import HEAD, MIGRATIONS, make_engine, schema_version

    if engine_name == "sqlite":
        db = str(tmp_path / "old.db")
    else:
        from tests.pg import new_database

        db = new_database(request.getfixturevalue("pg_server_url"), "migrate")
    engine = make_engine(db)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))

    def to(rev, fn=command.upgrade):
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            fn(cfg, rev)

    try:
        to("0001")
        assert schema_version(engine) == "0001"
        # Opening the index (vmdex sql on SQLite, any vmdex command as the PostgreSQL
        # owner) upgrades it; vmdex sql on PostgreSQL then runs as a reader.
        if engine_name == "pg":
            vmdex("dumps", db=db, check=True)
            from tests.pg import new_reader

            reader = new_reader(db)
        else:
            reader = db
        assert sql_rows(reader, "SELECT count(*), min(n), max(n) FROM page_numbers") == \
            [(512, 0, 511)]
        assert schema_version(engine) == HEAD  # the old index was brought up to date
        assert sql_rows(reader, "SELECT count(*) FROM v_pages") == [(0,)]
        to("0001", command.downgrade)
        assert schema_version(engine) == "0001"
        with engine.connect() as conn:
            names = set(sa_inspect(conn).get_table_names()) | set(sa_inspect(conn).get_view_names())
        assert "page_numbers" not in names and not any(n.startswith("v_") for n in names)
        to("head")
        assert sql_rows(reader, "SELECT count(*) FROM v_tasks") == [(0,)]
    finally:
        engine.dispose()


def sa_inspect(conn):
    from sqlalchemy import inspect

    return inspect(conn)


# --- a brand-new index is made without Alembic ----------------------------------------------
def schema_description(engine) -> dict:
    """Every table's columns (in order), indexes, constraints and foreign keys, every view's
    SQL, and the rows Alembic writes (page_numbers, alembic_version): what must not depend
    on whether the index was created at HEAD or migrated there."""
    from sqlalchemy import text

    out = {}
    with engine.connect() as conn:
        q = lambda sql: [tuple(r) for r in conn.execute(text(sql))]  # noqa: E731
        if conn.dialect.name == "sqlite":
            for typ, name, sql in q("SELECT type, name, sql FROM sqlite_master ORDER BY name"):
                if typ == "table":
                    indexes = sorted((i[1], i[2], tuple(q(f"PRAGMA index_info('{i[1]}')")))
                                     for i in q(f"PRAGMA index_list('{name}')"))
                    out[name] = (q(f"PRAGMA table_info('{name}')"),
                                 sorted(q(f"PRAGMA foreign_key_list('{name}')")), indexes)
                elif typ == "view":
                    out[name] = sql
        else:
            out["columns"] = q(
                "SELECT table_name, ordinal_position, column_name, data_type, is_nullable, "
                "column_default, character_maximum_length FROM information_schema.columns "
                "WHERE table_schema = current_schema() ORDER BY 1, 2")
            out["indexes"] = q("SELECT indexname, indexdef FROM pg_indexes "
                               "WHERE schemaname = current_schema() ORDER BY 1")
            out["constraints"] = q(
                "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) "
                "FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
                "WHERE n.nspname = current_schema() ORDER BY 1, 2")
            out["views"] = q("SELECT viewname, definition FROM pg_views "
                             "WHERE schemaname = current_schema() ORDER BY 1")
        out["page_numbers"] = q("SELECT count(*), min(n), max(n) FROM page_numbers")
        out["alembic_version"] = q("SELECT version_num FROM alembic_version")
    return out


@pytest.mark.parametrize("engine_name", ["sqlite", "pg"])
def test_new_index_equals_migrated_index(engine_name, tmp_path, request):
    """create_at_head (a new index, no Alembic) builds exactly the schema Alembic's
    migrations build, on both engines; and a new index is made without importing Alembic."""
    import subprocess
    import sys

    from vmdex.indexer.db import make_engine, migrate

    if engine_name == "sqlite":
        migrated, created = str(tmp_path / "migrated.db"), str(tmp_path / "created.db")
    else:
        from tests.pg import new_database

        server = request.getfixturevalue("pg_server_url")
        migrated, created = new_database(server, "migrated"), new_database(server, "created")
    engine = make_engine(migrated)
    with engine.begin() as conn:
        migrate(conn)
    engine.dispose()
    # the way an ingest opens a new index, in a process of its own
    code = ("import sys; from vmdex.indexer.db import make_engine, upgrade; "
            f"upgrade(make_engine({created!r})); "
            "sys.exit('alembic imported' if 'alembic' in sys.modules else 0)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    a, b = make_engine(migrated), make_engine(created)
    try:
        want, got = schema_description(a), schema_description(b)
        assert want["alembic_version"] == [(__import__("vmdex.indexer.db").indexer.db.HEAD,)]
        assert want["page_numbers"] == [(512, 0, 511)]
        assert len(want) > 10 or len(want["columns"]) > 100
        assert got == want
    finally:
        a.dispose()
        b.dispose()
