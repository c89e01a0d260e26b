"""Rows as an aligned table, CSV or JSON, written as they arrive.

The writers take any iterable of rows and hold at most SIZING_ROWS of them: CSV and JSON
write each row at once; the table sizes its columns on the first SIZING_ROWS rows (as
psql does with FETCH_COUNT), and a longer value further on widens only its own line.
"""
from __future__ import annotations

import csv
import itertools
import json
from decimal import Decimal
from typing import IO, Iterable

FORMATS = ("table", "csv", "json")
SIZING_ROWS = 1000


def plain(v):
    """A JSON-able value: Decimal → int/float, bytes → hex text."""
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    return v


def _text(v, null: str) -> str:
    v = plain(v)
    if v is None:
        return null
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _is_number(v) -> bool:
    return isinstance(plain(v), (int, float)) and not isinstance(v, bool)


def write_table(cols: list[str], rows: Iterable[tuple], out: IO[str]) -> None:
    rows = iter(rows)
    first = list(itertools.islice(rows, SIZING_ROWS))
    numeric = [any(r[i] is not None for r in first)
               and all(_is_number(r[i]) for r in first if r[i] is not None)
               for i in range(len(cols))]
    widths = [max([len(c)] + [len(_text(r[i], "NULL")) for r in first])
              for i, c in enumerate(cols)]

    def line(vals, align=True):
        parts = [v.rjust(w) if align and num else v.ljust(w)
                 for v, w, num in zip(vals, widths, numeric)]
        return "  ".join(parts).rstrip() + "\n"

    out.write(line(cols, align=False))
    out.write("  ".join("-" * w for w in widths) + "\n")
    for r in itertools.chain(first, rows):
        out.write(line([_text(v, "NULL") for v in r]))


def write_csv(cols: list[str], rows: Iterable[tuple], out: IO[str]) -> None:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow(["" if v is None else _text(v, "") for v in r])


def write_json(cols: list[str], rows: Iterable[tuple], out: IO[str]) -> None:
    """A list of objects, laid out as json.dump(..., indent=1) lays it out."""
    sep = "[\n"
    for r in rows:
        obj = json.dumps(dict(zip(cols, map(plain, r))), indent=1)
        out.write(sep + " " + obj.replace("\n", "\n "))
        sep = ",\n"
    out.write("[]\n" if sep == "[\n" else "\n]\n")


WRITERS = {"table": write_table, "csv": write_csv, "json": write_json}
