"""Ask vmdex the questions crash answered and compare: bytes of the terminal output
(stdout and stderr interleaved), and the exit status (non-zero exactly when crash
reported an error). Answers are computed in-process, through the same runner the CLI
uses, so thousands of questions take seconds."""
from __future__ import annotations

import gzip
import io
import json
import re
from collections import Counter
from pathlib import Path

from vmdex.query.words import crash_words

# crash reports a failed command through error(): a line starting with the command's
# name (`vm: ...`, `foreach: ...`), or the usage text (cmd_usage, "Usage:"); `vm -P` of a
# VMA the task does not have says "(not found)" (the fixtures' oracle files it as err.*).
_ERROR = re.compile(rb"^(vm|foreach|ps|sys): |^Usage:|^\(not found\)$", re.M)
# Families whose answer depends on which pages the dump variant kept (ps -a reads user
# pages that makedumpfile -d 31 drops): compared only on the variant crash read.
VARIANT_FAMILIES = ("ps_args",)


def crash_reported_error(answer: bytes) -> bool:
    return bool(_ERROR.search(answer))


def vmdex_answer(db: str, dump: str | None, cmd: str) -> tuple[bytes, int]:
    """(terminal output, exit status) of `vmdex --db DB [--dump N] CMD`, in-process."""
    from vmdex.indexer.errors import VmdexError
    from vmdex.query.answer import answer, query_words

    words = crash_words(cmd)
    argv = ["--db", db] + (["--dump", dump] if dump else []) + words
    fast = query_words(argv)
    if fast is None:
        raise ValueError(f"not a vm/foreach command: {cmd}")
    runner, rest, dbarg, dumparg, fmt = fast
    if rest and words[0] == "foreach":     # crash's words, as at the vmdex> prompt
        from vmdex.query.shell import prompt_foreach as runner
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


RAW_MEMORY_REFUSAL = b"crash would read raw memory there"
# crash failing inside itself (a structure offset it cannot find in a newer kernel, e.g.
# `vm: invalid structure member offset: page_first_page` from compound_head() on 7.x):
# no answer to compare with, so such questions are set aside and counted.
CRASH_INTERNAL = re.compile(rb"^@@ crash 9.0.2 died|invalid structure member offset|^ +FILE: \S+  LINE: \d+  FUNCTION: ",
                            re.M)
CRASH_FAILED: Counter = Counter()
REFUSED: Counter = Counter()     # questions vmdex refused, by family, since import
UNSURE: Counter = Counter()      # answers with a pointer printed bare and said so
UNSURE_NOTE = re.compile(rb"vmdex: 0x[0-9a-f]+: printed without <[^>\n]*>: whether it lies "
                         rb"in that object needs the vmlinux's symbol sizes\n")


def compare(rows: list[dict], db: str, dump: str | None,
            diffs: list[str] | None = None, damaged: bool = False) -> dict[str, tuple[int, int]]:
    """Per family: (identical, asked). On a damaged dump crash may stop a command without
    a word (a page the filter excluded: its RESTART is silent); vmdex then prints the same
    bytes but exits 1, so there only "crash reported an error => non-zero" is required."""
    same, asked = Counter(), Counter()
    for r in rows:
        if r["family"] in VARIANT_FAMILIES and dump is not None \
                and r.get("dump", dump) != dump.rsplit("/", 1)[-1]:
            continue
        want = r["crash"].encode("utf-8", "surrogateescape")
        if CRASH_INTERNAL.search(want):
            CRASH_FAILED[r["family"]] += 1
            continue
        got, code = vmdex_answer(db, dump, r["cmd"])
        if UNSURE_NOTE.search(got):
            # a kernel read from the dump: a pointer printed bare, said on stderr (the
            # vmlinux's symbol sizes would tell whether crash names it); the rest must match
            got = UNSURE_NOTE.sub(b"", got)
            UNSURE[r["family"]] += 1
        err = crash_reported_error(want)
        ok = got == want and ((code != 0) == err or damaged and code == 1 and not err)
        if not ok and code == 2 and RAW_MEMORY_REFUSAL in got \
                and b"invalid mm_struct address" not in want:
            # crash read raw memory the index does not keep (vm -M inside the mm_struct
            # slab): vmdex must refuse in one line, never guess. Counted apart.
            ok = True
            REFUSED[r["family"]] += 1
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


def dump_sets(paths: list[Path]) -> list[tuple[str, list[Path]]]:
    """A folder's dumps as vmdex ingests them: (name, files); the files of a makedumpfile
    --split set are one dump, named as vmdex names it (what their names share)."""
    from vmdex.indexer.dumpfile.split import group_split_files
    from vmdex.indexer.ingest import set_name

    out = []
    for d in group_split_files([str(p) for p in sorted(paths)]):
        files = [Path(x) for x in (d if isinstance(d, tuple) else (d,))]
        out.append((set_name(files), files))
    return out


def replay_folder(folder: Path, db: Path, diffs: list[str]) -> tuple[int, int] | None:
    """For the kernel matrix: every generated/*.jsonl.gz in a dump folder, against each
    dump of that folder already in `db` (named by file)."""
    files = sorted((folder / "generated").glob("*.jsonl.gz"))
    if not files:
        return None
    rows = [r for f in files for r in load_answers(f)]
    same = asked = 0
    for dump, _files in dump_sets(list(folder.glob("vmcore.*"))):
        dd: list[str] = []
        for a, b in compare(rows, str(db), dump, dd).values():
            same, asked = same + a, asked + b
        diffs.extend(f"{folder.name}/{dump}: {d}" for d in dd)
    return same, asked
