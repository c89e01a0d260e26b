"""`vmdex sql` confined and bounded by the engines: PostgreSQL as the server's superuser
and as reader roles, SQLite with its authorizer; runaway statements stopped by --timeout;
rows streamed. Real servers and files: a statement that got through would leave a trace
(a file, a killed session, a changed catalog), and the tests look for it."""
from __future__ import annotations

import hashlib
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import VMDEX, vmdex
from tests.pg import as_role, new_reader

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def _dsn(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


def admin(url: str):
    import psycopg

    return psycopg.connect(_dsn(url), autocommit=True)


def catalog_fingerprint(url: str) -> str:
    """Roles, memberships, default ACLs, large objects, tables and functions of the cluster
    and database: what an escape would change."""
    queries = [
        "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolcanlogin FROM pg_roles",
        "SELECT roleid, member, admin_option FROM pg_auth_members",
        "SELECT oid FROM pg_largeobject_metadata",
        "SELECT n.nspname, c.relname, c.relkind, c.relacl::text FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT LIKE 'pg_%'",
        "SELECT proname, pronamespace FROM pg_proc "
        "WHERE pronamespace <> 'pg_catalog'::regnamespace",
        "SELECT defaclrole, defaclobjtype, defaclacl::text FROM pg_default_acl",
        "SELECT datname, datacl::text FROM pg_database",
    ]
    h = hashlib.sha256()
    with admin(url) as c:
        for q in queries:
            h.update(repr(sorted(map(repr, c.execute(q).fetchall()))).encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def shared_dir():
    """A directory the server's own user (postgres) could write into: were a COPY TO
    PROGRAM or a file write to run, its file would appear here."""
    d = Path(tempfile.mkdtemp(prefix="vmdex-escape-", dir="/tmp"))
    d.chmod(0o777)
    yield d
    for f in d.iterdir():
        f.unlink()
    d.rmdir()


@pytest.fixture(scope="module", params=["superuser", "reader"])
def pg_role_url(request, fleet_pg, fleet_pg_reader):
    return request.param, fleet_pg if request.param == "superuser" else fleet_pg_reader


ESCAPES = {
    "copy-to-program": "COPY (SELECT 1) TO PROGRAM 'touch {dir}/program-ran'",
    "copy-to-file": "COPY (SELECT 1) TO '{dir}/copied'",
    "copy-from-program": "COPY tasks FROM PROGRAM 'touch {dir}/program-ran-2'",
    "pg_read_file": "SELECT pg_read_file('/etc/hostname')",
    "pg_read_binary_file": "SELECT pg_read_binary_file('/etc/passwd')",
    "pg_ls_dir": "SELECT pg_ls_dir('/')",
    "pg_stat_file": "SELECT pg_stat_file('/etc/hostname')",
    "lo_import": "SELECT lo_import('/etc/hostname')",
    "lo_export": "SELECT lo_export(lo_create(0), '{dir}/lo-exported')",
    "set-role": "SELECT set_config('role', 'postgres', false), pg_read_file('/etc/hostname')",
    "reload-conf": "SELECT pg_reload_conf()",
    "checkpoint": "CHECKPOINT",
    "create-role": "CREATE ROLE escaped SUPERUSER",
    "grant": "GRANT pg_read_server_files TO CURRENT_USER",
    "alter-system": "ALTER SYSTEM SET fsync = on",
    "set-session-auth": "SET SESSION AUTHORIZATION vmdex",
    "temp-table": "CREATE TEMP TABLE t AS SELECT 1",
    "nextval-like": "SELECT setval(pg_get_serial_sequence('dumps', 'id'), 1)",
    "advisory-xact": "SELECT pg_advisory_xact_lock(1), pg_read_file('/etc/hostname')",
}


@pytest.mark.parametrize("what", sorted(ESCAPES))
def test_pg_escapes_refused(pg_role_url, what, shared_dir, fleet_pg):
    role, url = pg_role_url
    before = catalog_fingerprint(fleet_pg)
    p = vmdex("sql", ESCAPES[what].format(dir=shared_dir), db=url)
    err = p.stderr.decode()
    assert p.returncode == 2, (p.returncode, err, p.stdout)
    assert p.stdout == b"" and err.startswith("vmdex: ") and err.count("\n") == 1, err
    if role == "superuser":   # refused for the role, before the statement was sent
        assert err.startswith("vmdex: refused: role vmdex reaches beyond the index "
                              "(superuser)"), err
        assert "grant-reader" in err
    assert list(shared_dir.iterdir()) == []
    assert catalog_fingerprint(fleet_pg) == before


def test_pg_rolled_back(fleet_pg_reader, fleet_pg):
    """PostgreSQL lets a READ ONLY transaction create a large object; vmdex rolls every
    statement's transaction back, so none is left."""
    before = catalog_fingerprint(fleet_pg)
    p = vmdex("sql", "SELECT lo_from_bytea(0, 'x') > 0 AS made", db=fleet_pg_reader)
    assert p.returncode == 0, p.stderr
    assert catalog_fingerprint(fleet_pg) == before
    with admin(fleet_pg) as c:
        assert c.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone() == (0,)


@pytest.mark.parametrize("fn", ["pg_terminate_backend", "pg_cancel_backend"])
def test_other_sessions_survive(pg_role_url, fn, fleet_pg):
    """An ingest job's session (the writer role) is out of reach of `vmdex sql`."""
    _, url = pg_role_url
    with admin(fleet_pg) as victim:
        pid = victim.execute("SELECT pg_backend_pid()").fetchone()[0]
        victim.execute("BEGIN")
        victim.execute("SELECT count(*) FROM tasks")
        p = vmdex("sql", f"SELECT {fn}({pid})", db=url)
        assert p.returncode == 2, p
        assert p.stderr.decode().count("\n") == 1
        assert victim.execute("SELECT 1").fetchone() == (1,)   # still alive, same transaction
        victim.execute("COMMIT")


def test_superuser_message(fleet_pg):
    p = vmdex("sql", "SELECT 1", db=fleet_pg)
    assert p.returncode == 2
    assert p.stderr.decode() == (
        "vmdex: refused: role vmdex reaches beyond the index (superuser); vmdex sql runs only "
        "under a plain reader role: make one with `vmdex --db ADMIN_URL grant-reader NAME` "
        "(docs/schema.md)\n")


def test_reader_reads(fleet_pg_reader):
    p = vmdex("sql", "--format", "csv", "SELECT count(*) AS n FROM dumps", db=fleet_pg_reader)
    assert p.returncode == 0, p.stderr
    assert int(p.stdout.decode().split()[1]) > 0


def _role(fleet_pg, *grants: str) -> str:
    """A hand-made login role with the grants given (each a format string taking {r})."""
    role = f"hand_{uuid.uuid4().hex[:8]}"
    with admin(fleet_pg) as c:
        c.execute(f'CREATE ROLE "{role}" LOGIN')
        for g in grants:
            c.execute(g.format(r=f'"{role}"'))
    from tests import pg

    pg._roles.append(role)
    return as_role(fleet_pg, role)


def test_plain_select_role_works_as_is(fleet_pg):
    url = _role(fleet_pg, "GRANT USAGE ON SCHEMA public TO {r}",
                "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {r}")
    p = vmdex("sql", "SELECT count(*) FROM v_tasks", db=url)
    assert p.returncode == 0, p.stderr


READER = ("GRANT USAGE ON SCHEMA public TO {r}",
          "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {r}")


@pytest.mark.parametrize("extra,reason", [
    ("GRANT pg_read_server_files TO {r}", "member of pg_read_server_files"),
    ("GRANT pg_write_server_files TO {r}", "member of pg_write_server_files"),
    ("GRANT pg_execute_server_program TO {r}", "member of pg_execute_server_program"),
    ("GRANT pg_signal_backend TO {r}", "member of pg_signal_backend"),
    ("GRANT pg_write_all_data TO {r}", "member of pg_write_all_data"),
    ("GRANT INSERT ON tasks TO {r}", "may write table tasks"),
    ("GRANT TRUNCATE ON page_runs TO {r}", "may write table page_runs"),
    ("GRANT vmdex TO {r}", "superuser (through role vmdex)"),
    ("ALTER ROLE {r} CREATEROLE", "CREATEROLE"),
])
def test_unfit_roles_refused(fleet_pg, extra, reason, shared_dir):
    """Any right beyond reading, held directly or through a role the session may SET ROLE
    to, refuses the statement before it is sent."""
    url = _role(fleet_pg, *READER, extra)
    p = vmdex("sql", f"COPY (SELECT 1) TO PROGRAM 'touch {shared_dir}/ran'", db=url)
    err = p.stderr.decode()
    assert p.returncode == 2 and err.startswith("vmdex: refused: role hand_"), err
    assert reason in err, err
    assert list(shared_dir.iterdir()) == []


def test_grant_reader_refuses_a_superuser(fleet_pg):
    with admin(fleet_pg) as c:
        c.execute('CREATE ROLE "super_reader" LOGIN SUPERUSER')
    from tests import pg

    pg._roles.append("super_reader")
    p = vmdex("grant-reader", "super_reader", db=fleet_pg)
    assert p.returncode == 2
    assert p.stderr.decode() == ("vmdex: grant-reader: role super_reader cannot be a reader: "
                                 "superuser\n")


def test_grant_reader_sees_later_tables(fleet_pg):
    """Default privileges: a table a later migration adds is readable by an existing reader."""
    url = new_reader(fleet_pg)
    with admin(fleet_pg) as c:
        c.execute("CREATE TABLE later_migration (a integer)")
    try:
        p = vmdex("sql", "SELECT count(*) FROM later_migration", db=url)
        assert p.returncode == 0, p.stderr
    finally:
        with admin(fleet_pg) as c:
            c.execute("DROP TABLE later_migration")


def test_grant_reader_on_sqlite(tmp_path):
    p = vmdex("grant-reader", "r", db=tmp_path / "x.db")
    assert p.returncode == 2 and p.stderr.decode().count("\n") == 1


# --- bounded ----------------------------------------------------------------------------
RUNAWAY = {
    "sleep": "SELECT pg_sleep(60)",
    "recursive": "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
                 "SELECT count(*) FROM r",
    # The statement undoes statement_timeout; the client's cancel request still stops it.
    "undo-timeout": "SELECT set_config('statement_timeout', '0', false), pg_sleep(60)",
    "cross-join": "SELECT count(*) FROM page_runs a, page_runs b, page_runs c",
}
SQLITE_RUNAWAY = {
    "recursive": "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
                 "SELECT count(*) FROM r",
    "cross-join": "SELECT count(*) FROM page_runs a, page_runs b, page_runs c",
}


RUNAWAYS = [("fleet_pg_reader", w, q) for w, q in sorted(RUNAWAY.items())] + \
    [("fleet_sqlite", w, q) for w, q in sorted(SQLITE_RUNAWAY.items())]


@pytest.mark.parametrize("fleet,what,statement", RUNAWAYS,
                         ids=[f"{f}-{w}" for f, w, _ in RUNAWAYS])
def test_runaway_stopped(request, fleet, what, statement):
    t0 = time.monotonic()
    p = vmdex("sql", "--timeout", "1", statement, db=request.getfixturevalue(fleet))
    assert p.returncode == 2, p
    assert p.stderr.decode() == ("vmdex: sql: statement stopped after 1 s "
                                 "(vmdex sql --timeout SECONDS)\n")
    assert time.monotonic() - t0 < 15


def test_default_timeout_is_a_bound(fleet_sqlite):
    from vmdex.query.sql import DEFAULT_TIMEOUT

    assert 0 < DEFAULT_TIMEOUT <= 600
    p = vmdex("sql", "--help")
    assert b"--timeout" in p.stdout


@pytest.mark.parametrize("fleet", ["fleet_sqlite", "fleet_pg_reader"])
def test_rows_are_streamed(request, fleet):
    """3 M rows of 100 bytes (≥ 300 MB if held) pass through a process that stays small."""
    db = request.getfixturevalue(fleet)
    statement = ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r "
                 "WHERE n < 3000000) SELECT n, substr(printf('%0100d', n), 1, 100) FROM r"
                 if fleet == "fleet_sqlite" else
                 "SELECT n, lpad(n::text, 100, '0') FROM generate_series(1, 3000000) n")
    p = subprocess.Popen([VMDEX, "--db", str(db), "sql", "--format", "csv", "--timeout", "300",
                          statement], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines, peak_kib = 0, 0
    last = b""
    for line in p.stdout:
        lines += 1
        last = line
        if lines % 100_000 == 0:   # the child's own high-water mark (rusage would also
            peak_kib = max(peak_kib, _hwm_kib(p.pid))   # count this big test process: fork)
    err = p.stderr.read()
    assert p.wait() == 0, err
    assert lines == 3_000_001 and last.startswith(b"3000000,")
    assert 0 < peak_kib < 200 * 1024, f"peak RSS {peak_kib} KiB"


def _hwm_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines()
                 if line.startswith("VmHWM:")), 0)


# --- SQLite: extensions, ATTACH, giant statements ---------------------------------------------
SQLITE_REFUSED = {
    "load_extension": "SELECT load_extension('/lib/x86_64-linux-gnu/libm.so.6')",
    "load_extension-2": "SELECT load_extension('libm.so.6', 'sqrt')",
    "attach-uri": "ATTACH DATABASE 'file:{dir}/attached.db?mode=rwc' AS other",
    "attach-memory": "ATTACH DATABASE ':memory:' AS other",
    "attach-in-select": "SELECT * FROM pragma_database_list WHERE name = 'x' AND "
                        "(SELECT 1 FROM tasks) AND 0; ATTACH 'file:{dir}/a2.db' AS o",
    "pragma-function": "SELECT * FROM pragma_writable_schema",
}


@pytest.mark.parametrize("what", sorted(SQLITE_REFUSED))
def test_sqlite_refused(fleet_sqlite, what, tmp_path):
    p = vmdex("sql", SQLITE_REFUSED[what].format(dir=tmp_path), db=fleet_sqlite)
    err = p.stderr.decode()
    assert p.returncode == 2 and err.count("\n") == 1, err
    assert err.startswith("vmdex: refused: "), err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fleet", ["fleet_sqlite", "fleet_pg_reader"])
def test_giant_statements(request, fleet):
    db = request.getfixturevalue(fleet)
    deep = "SELECT " + "(" * 100_000 + "1" + ")" * 100_000
    long_ = "SELECT 1 " + "-- padding\n" * 200_000
    for text, want in ((deep, "vmdex: sql: "), (long_, "vmdex: sql: statement longer than")):
        p = subprocess.run([VMDEX, "--db", str(db), "sql", "-"], input=text.encode(),
                           capture_output=True)
        err = p.stderr.decode()
        assert p.returncode == 2 and err.count("\n") == 1 and err.startswith(want), err[:300]


def test_statement_from_stdin(fleet_sqlite):
    p = subprocess.run([VMDEX, "--db", fleet_sqlite, "sql", "--format", "csv", "-"],
                       input=b"SELECT 41 + 1 AS n", capture_output=True)
    assert p.returncode == 0 and p.stdout == b"n\n42\n", p
