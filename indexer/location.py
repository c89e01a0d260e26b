"""Where the index is: `--db` path or SQLAlchemy URL, else $VMDEX_DB, else ./vmdex.db."""
from __future__ import annotations

import os


def default_location() -> str:
    return os.environ.get("VMDEX_DB") or "vmdex.db"


def url_for(location: str | None) -> str:
    loc = location or default_location()
    if "://" in loc:
        return loc
    return "sqlite:///" + os.path.abspath(os.path.expanduser(loc))


def need_psycopg() -> None:
    """PostgreSQL indexes need the optional driver: say in one line which extra brings it."""
    import importlib

    try:
        importlib.import_module("psycopg")
    except ImportError:
        from vmdex.indexer.errors import VmdexError

        raise VmdexError("a PostgreSQL index needs the psycopg driver: "
                         "pip install 'vmdex[postgres]'") from None
