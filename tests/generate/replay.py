"""Ask vmdex the questions crash answered and compare: bytes of the terminal output
(stdout and stderr interleaved), and the exit status (non-zero exactly when crash
reported an error). Answers are computed in-process, through the same runner the CLI
uses, so thousands of questions take seconds."""
from __future__ import annotations

import gzip
import io
import json
import re
import shlex
from collections import Counter
from pathlib import Path

# crash reports a failed command through error(): a line starting with the command's
# name (`vm: ...`, `foreach: ...`), or the usage text (cmd_usage, "Usage:"); `vm -P` of a
# VMA the task does not have says "(not found)" (the fixtures' oracle files it as err.*).
_ERROR = re.compile(rb"^(vm|foreach): |^Usage:|^\(not found\)$", re.M)


def crash_reported_error(answer: bytes) -> bool:
    return bool(_ERROR.search(answer))


def vmdex_answer(db: str, dump: str | None, cmd: str) -> tuple[bytes, int]:
    """(terminal output, exit status) of `vmdex --db DB [--dump N] CMD`, in-process."""
    from indexer.errors import VmdexError
    from query.answer import answer, query_words

    words = shlex.split(cmd)
    argv = ["--db", db] + (["--dump", dump] if dump else []) + words
    fast = query_words(argv)
    if fast is None:
        raise ValueError(f"not a vm/foreach command: {cmd}")
    runner, rest, dbarg, dumparg, fmt = fast
    term = _Terminal()
    try:
        code = _with_streams(term, lambda: answer(runner, rest, dbarg, dumparg, fmt))
    except VmdexError as exc:
        term.write(f"vmdex: {exc}\n")
        code = 2
    return term.getvalue().encode("utf-8", "surrogateescape"), code


class _Terminal(io.StringIO):
    """stdout and stderr of one command, interleaved as a terminal shows them."""


def _with_streams(term, fn):
    import sys

    old = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = term
    try:
        return fn()
    finally:
        sys.stdout, sys.stderr = old


def load_answers(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8", errors="surrogateescape") as f:
        return [json.loads(line) for line in f]


def save_answers(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8", errors="surrogateescape", compresslevel=9) as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def compare(rows: list[dict], db: str, dump: str | None,
            diffs: list[str] | None = None) -> dict[str, tuple[int, int]]:
    """Per family: (identical, asked)."""
    same, asked = Counter(), Counter()
    for r in rows:
        want = r["crash"].encode("utf-8", "surrogateescape")
        got, code = vmdex_answer(db, dump, r["cmd"])
        ok = got == want and (code != 0) == crash_reported_error(want)
        asked[r["family"]] += 1
        same[r["family"]] += ok
        if not ok and diffs is not None:
            diffs.append(describe(r["cmd"], want, got, code))
    return {f: (same[f], asked[f]) for f in sorted(asked)}


def describe(cmd: str, want: bytes, got: bytes, code: int) -> str:
    w, g = want.splitlines(), got.splitlines()
    i = next((i for i, (a, b) in enumerate(zip(w, g)) if a != b), min(len(w), len(g)))
    if w == g:
        return f"{cmd}: same text, exit {code} (crash {'did' if crash_reported_error(want) else 'did not'} report an error)"
    return (f"{cmd}: line {i + 1}: crash {w[i] if i < len(w) else b'<end>'!r} "
            f"vmdex {g[i] if i < len(g) else b'<end>'!r}")


def replay_folder(folder: Path, db: Path, diffs: list[str]) -> tuple[int, int] | None:
    """For the kernel matrix: every generated/*.jsonl.gz in a dump folder, against each
    dump of that folder already in `db` (named by file)."""
    files = sorted((folder / "generated").glob("*.jsonl.gz"))
    if not files:
        return None
    same = asked = 0
    for f in files:
        rows = load_answers(f)
        for dump in sorted(p.name for p in folder.glob("vmcore.*")):
            for a, b in compare(rows, str(db), dump, diffs).values():
                same, asked = same + a, asked + b
    return same, asked
