"""The index an ingest writes to, its SQLAlchemy engine made when first needed.

An ingest into a new SQLite file has nothing to read from it before the walk (no schema
to bring up, no kernel row to reuse), so the engine, and SQLAlchemy's import with it
(0.1-0.3 s), wait until the walk's workers have started instead of delaying them.
"""
from __future__ import annotations

import os

from vmdex.indexer.location import url_for


class IndexTarget:
    def __init__(self, location: str | None):
        self.location = location
        self._engine = None

    def is_new(self) -> bool:
        """An SQLite index that does not exist yet (or an empty file) in a folder this
        process can write: nothing in it to read. Anything else is opened at once, so a
        bad location is said before the dump is read."""
        url = url_for(self.location)
        if not url.startswith("sqlite:///"):
            return False
        path = url.split("///", 1)[1]
        try:
            return os.path.getsize(path) == 0
        except FileNotFoundError:
            return os.access(os.path.dirname(path) or ".", os.W_OK)
        except OSError:
            return False

    @property
    def engine(self):
        if self._engine is None:
            from vmdex.indexer.db import make_engine

            self._engine = make_engine(self.location)
        return self._engine

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
