"""A throwaway PostgreSQL server for the tests: initdb + pg_ctl in a temp dir, 127.0.0.1.

    with pg_server() as url:          # postgresql+psycopg://vmdex@127.0.0.1:PORT/postgres
        db_url = new_database(url, "idx")

$VMDEX_TEST_PG_URL (a server URL whose role may CREATE DATABASE) replaces the throwaway
server. Missing PostgreSQL binaries are an error, not a skip: CI installs them
(Debian: postgresql-15, i.e. /usr/lib/postgresql/15/bin).
When run as root, the server runs as the `postgres` user (initdb refuses root).
"""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

ENV_URL = "VMDEX_TEST_PG_URL"
SUPERUSER = "vmdex"


def pg_bindir() -> Path:
    """The directory holding initdb/pg_ctl: $PG_BINDIR, PATH, or the newest Debian install."""
    env = os.environ.get("PG_BINDIR")
    candidates = [Path(env)] if env else []
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                    key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0)
    candidates += [Path(p) for p in reversed(debian)]
    for c in candidates:
        if (c / "initdb").is_file() and (c / "pg_ctl").is_file():
            return c
    raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found: install "
                       "Debian's postgresql-15 (or set PG_BINDIR); PostgreSQL tests do not skip")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", "postgres", "--"] + argv
    return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(argv)]


def _run(argv: list[str], **kw) -> None:
    p = subprocess.run(_as_server_user(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       **kw)
    if p.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({p.returncode}): {p.stdout.decode()[-2000:]}")


@contextlib.contextmanager
def pg_server() -> Iterator[str]:
    """Yield the URL of a running server; stop it and delete its files afterwards."""
    if os.environ.get(ENV_URL):
        url = os.environ[ENV_URL]
        try:
            yield url
        finally:
            _drop_created(url)
        return
    bindir = pg_bindir()
    # /tmp: short enough for the server's Unix socket path, and reachable by `postgres`.
    top = Path(tempfile.mkdtemp(prefix="vmdex-pg-", dir="/tmp" if os.path.isdir("/tmp")
                                else None))
    data = top / "data"
    try:
        if os.geteuid() == 0:
            import pwd

            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root, but there is no `postgres` user to run "
                                   "the test server as (Debian's postgresql package creates "
                                   "it)") from None
            os.chown(top, pw.pw_uid, pw.pw_gid)
        _run([str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
              "-E", "UTF8", "--locale=C", "--no-sync"])
        port = _free_port()
        opts = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={top} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=100 -c shared_buffers=128MB")
        _run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(top / "server.log"),
              "-o", opts, "-w", "-t", "60", "start"])
        try:
            yield f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/postgres"
        finally:
            _run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _dsn(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


_created: list[str] = []


def new_database(server_url: str, prefix: str = "vmdex") -> str:
    """Create an empty database on the server; return its SQLAlchemy URL."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_dsn(server_url), autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    _created.append(name)
    base, _, tail = server_url.rpartition("/")
    query = ("?" + tail.split("?", 1)[1]) if "?" in tail else ""
    return f"{base}/{name}{query}"


def as_role(url: str, role: str) -> str:
    """The same URL, logging in as `role` (trust auth: no password)."""
    head, _, tail = url.partition("://")
    host = tail.split("@", 1)[1] if "@" in tail.split("/", 1)[0] else tail
    return f"{head}://{role}@{host}"


_roles: list[str] = []


def new_reader(db_url: str) -> str:
    """`vmdex grant-reader` a fresh role on the database; return the URL logging in as it."""
    from tests.conftest import VMDEX

    role = f"reader_{uuid.uuid4().hex[:10]}"
    p = subprocess.run([VMDEX, "--db", db_url, "grant-reader", role], capture_output=True)
    if p.returncode != 0:
        raise RuntimeError(f"grant-reader failed: {p.stderr.decode()}")
    _roles.append(role)
    return as_role(db_url, role)


def _drop_created(server_url: str) -> None:
    """On a server we do not own ($VMDEX_TEST_PG_URL), drop the databases and roles the
    tests made."""
    import psycopg

    with psycopg.connect(_dsn(server_url), autocommit=True) as c:
        while _created:
            c.execute(f'DROP DATABASE IF EXISTS "{_created.pop()}" WITH (FORCE)')
        while _roles:
            c.execute(f'DROP ROLE IF EXISTS "{_roles.pop()}"')
