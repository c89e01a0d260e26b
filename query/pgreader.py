"""PostgreSQL: what makes a role fit to run `vmdex sql`, and how to make one.

A READ ONLY transaction does not confine a privileged role: superusers and the members of
`pg_execute_server_program`, `pg_read_server_files`, ... reach the server's files, programs
and other sessions from inside a SELECT. What confines is the role itself, so `vmdex sql`
checks the session's role, and every role it could switch to with SET ROLE (its
memberships), before it sends the user's statement.
"""
from __future__ import annotations

# Predefined roles whose rights reach beyond the index's rows (PostgreSQL 11-17).
ESCAPE_ROLES = ("pg_execute_server_program", "pg_read_server_files", "pg_write_server_files",
                "pg_signal_backend", "pg_write_all_data", "pg_checkpoint",
                "pg_create_subscription")
# Any of these on one of vmdex's tables is a write right.
WRITE_PRIVILEGES = "INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER"

# Every role `who` is or may become (pg_has_role MEMBER includes SET ROLE targets and the
# indirect memberships), with its attributes.
_MEMBERSHIPS = """
SELECT r.rolname, r.rolsuper, r.rolcreaterole
FROM pg_roles r
WHERE pg_has_role(%(who)s, r.oid, 'MEMBER')
ORDER BY r.rolname
"""
# vmdex's tables and views: those of the schema holding alembic_version.
_WRITABLE = f"""
SELECT r.rolname, c.relname
FROM pg_roles r, pg_class c
WHERE pg_has_role(%(who)s, r.oid, 'MEMBER')
  AND c.relnamespace = (SELECT relnamespace FROM pg_class
                        WHERE oid = to_regclass('alembic_version'))
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND has_table_privilege(r.oid, c.oid, '{WRITE_PRIVILEGES}')
ORDER BY c.relname, r.rolname
LIMIT 1
"""


def unfit_reasons(cursor, who: str | None = None) -> list[str]:
    """Why role `who` (default: the session's role) must not run user statements; empty
    when it is a plain reader. Runs two catalog SELECTs on `cursor` (a psycopg cursor)."""
    params = {"who": who or _current_user(cursor)}
    memberships = cursor.execute(_MEMBERSHIPS, params).fetchall()
    if any(name == params["who"] and is_super for name, is_super, _ in memberships):
        return ["superuser"]   # (a superuser counts as a member of every role)
    reasons = []
    for name, is_super, createrole in memberships:
        via = "" if name == params["who"] else f" (through role {name})"
        if is_super:
            reasons.append(f"superuser{via}")
        if createrole:
            reasons.append(f"CREATEROLE{via}")
        if name in ESCAPE_ROLES:
            reasons.append(f"member of {name}")
    row = cursor.execute(_WRITABLE, params).fetchone()
    if row is not None:
        via = "" if row[0] == params["who"] else f" through role {row[0]}"
        reasons.append(f"may write table {row[1]}{via}")
    return reasons


def _current_user(cursor) -> str:
    return cursor.execute("SELECT current_user").fetchone()[0]


def grant_reader_statements(role: str, schema: str, database: str, create: bool,
                            password: str | None) -> list:
    """The statements that make `role` a reader of vmdex's tables in `schema`: LOGIN,
    CONNECT, USAGE, SELECT on the tables there now, and on those later migrations add
    (default privileges of the role running this, which is the one that migrates)."""
    from psycopg import sql

    r, s, d = sql.Identifier(role), sql.Identifier(schema), sql.Identifier(database)
    out = []
    if create:
        out.append(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                           "NOREPLICATION").format(r)
                   + (sql.SQL(" PASSWORD {}").format(sql.Literal(password))
                      if password is not None else sql.SQL("")))
    elif password is not None:
        out.append(sql.SQL("ALTER ROLE {} PASSWORD {}").format(r, sql.Literal(password)))
    out += [
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(d, r),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, r),
        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(s, r),
        sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(s, r),
    ]
    return out
