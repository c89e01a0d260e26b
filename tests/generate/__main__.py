"""Question generator: ask live crash and vmdex the same generated questions.

    python -m tests.generate record FOLDER [--seed S] [--count N] [--out FILE]
        derive N questions from FOLDER's dump (seeded), ask one live crash session,
        save questions and answers (default FOLDER/generated/seedS.jsonl.gz)
    python -m tests.generate check FOLDER [--answers FILE...] [--dump VARIANT]
        ingest the folder's dump(s) into a scratch index and compare vmdex's answers,
        reported by family; exit 1 if any differs
    python -m tests.generate live FOLDER [--seed S] [--count N]
        record into a scratch file, then check
    python -m tests.generate record-damaged FOLDER [--seed S] [--count N] [--out DIR]
        the same on each damaged copy of the folder's kdump dump (tests/generate/damaged.py),
        saved as DIR/damaged-NAME.jsonl.gz (default tests/generated/FOLDER-NAME/)
    python -m tests.generate check-damaged FOLDER [--out DIR]

FOLDER is a fixture folder (vmlinux[.xz], vmcore.*, oracle/). crash is
../shared/fixtures/tools/crash9.sh unless $CRASH names another.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.generate import crashlive, facts, questions, replay


def _vmlinux(folder: Path) -> Path:
    from tests import fixturedata as F

    plain = folder / "vmlinux"
    if plain.exists():
        return plain.resolve()
    return F._unpacked(folder / "vmlinux.xz", folder.name)


def _dumps(folder: Path) -> list[Path]:
    from tests import fixturedata as F

    names = sorted({p.name.removesuffix(".xz") for p in folder.glob("vmcore.*")})
    return [folder / n if (folder / n).exists() else F._unpacked(folder / (n + ".xz"), folder.name)
            for n in names]


def primary(folder: Path) -> Path:
    """The dump crash's oracle was made from (make-dumps.sh PRIMARY): vmcore.kdump-zlib,
    else (kdump captures) the first kdump-c-dN, kdump-E-dN, kdump-elf, else the first."""
    dumps = _dumps(folder)
    for prefix in ("vmcore.kdump-zlib", "vmcore.kdump-c-d", "vmcore.kdump-E-d",
                   "vmcore.kdump-elf"):
        for d in dumps:
            if d.name.startswith(prefix):
                return d
    return dumps[0]


def record(folder: Path, seed: int, count: int, out: Path, dump: Path | None = None) -> Path:
    qs = questions.generate(facts.load(folder), seed, count)
    dump = dump or primary(folder)
    answers = crashlive.ask(_vmlinux(folder), dump, [c for _, c in qs],
                            crashlive.crash_options(folder))
    replay.save_answers(out, [{"family": f, "cmd": c, "dump": dump.name,
                               "crash": a.decode("utf-8", "surrogateescape")}
                              for (f, c), a in zip(qs, answers)])
    return out


GENERATED = Path(__file__).resolve().parents[1] / "generated"


def damaged_copies(folder: Path) -> dict[str, Path]:
    from tests import fixturedata as F
    from tests.generate import damaged

    return damaged.make(folder, facts.load(folder), _vmlinux(folder),
                        F.cache_root() / "damaged" / folder.name)


def check_dump(folder: Path, dump: Path, answer_files: list[Path]) -> int:
    import subprocess

    vmdex = str(Path(sys.executable).parent / "vmdex")
    rows = [r for f in answer_files for r in replay.load_answers(f)]
    with tempfile.TemporaryDirectory(prefix="vmdex-gen-") as tmp:
        db = str(Path(tmp) / "vmdex.db")
        subprocess.run([vmdex, "--db", db, "ingest", "--vmlinux", str(_vmlinux(folder)),
                        "--name", dump.name, str(dump)], check=True, stdout=subprocess.DEVNULL)
        diffs: list[str] = []
        per = replay.compare(rows, db, dump.name, diffs, damaged=True)
    return _report(f"{folder.name} {dump.name}", per, diffs)


def _report(title: str, per: dict, diffs: list[str]) -> int:
    same = sum(a for a, _ in per.values())
    total = sum(b for _, b in per.values())
    refused = sum(replay.REFUSED.values())
    failed = sum(replay.CRASH_FAILED.values())
    print(f"{title}: {same}/{total} identical"
          + (f" (of them {refused} refused: crash read raw memory)" if refused else "")
          + (f"; {failed} set aside: crash failed inside itself" if failed else ""))
    replay.REFUSED.clear()
    replay.CRASH_FAILED.clear()
    for fam, (a, b) in per.items():
        print(f"  {fam:14} {a}/{b}{'' if a == b else '  <--'}")
    for d in diffs[:40]:
        print("   ", d)
    return int(same != total)


def check(folder: Path, answer_files: list[Path], variants: list[str] | None) -> int:
    import subprocess

    vmdex = str(Path(sys.executable).parent / "vmdex")
    rows = [r for f in answer_files for r in replay.load_answers(f)]
    bad = 0
    with tempfile.TemporaryDirectory(prefix="vmdex-gen-") as tmp:
        db = str(Path(tmp) / "vmdex.db")
        for name, files in replay.dump_sets(_dumps(folder)):
            if variants and name not in variants:
                continue
            subprocess.run([vmdex, "--db", db, "ingest", "--vmlinux", str(_vmlinux(folder)),
                            "--name", name, *map(str, files)], check=True,
                           stdout=subprocess.DEVNULL)
            diffs: list[str] = []
            per = replay.compare(rows, db, name, diffs)
            bad += _report(f"{folder.name} {name}", per, diffs)
    return 1 if bad else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.generate")
    ap.add_argument("mode", choices=("record", "check", "live", "record-damaged",
                                     "check-damaged"))
    ap.add_argument("folder", type=Path)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--answers", type=Path, nargs="*")
    ap.add_argument("--dump", action="append", help="only this variant (repeatable)")
    a = ap.parse_args(argv)
    if a.mode == "record":
        out = a.out or a.folder / "generated" / f"seed{a.seed}.jsonl.gz"
        print(record(a.folder, a.seed, a.count, out))
        return 0
    if a.mode in ("record-damaged", "check-damaged"):
        out_dir = a.out or GENERATED / a.folder.name
        copies = damaged_copies(a.folder)
        bad = 0
        for name, path in copies.items():
            f = out_dir / f"damaged-{name}.jsonl.gz"
            if a.mode == "record-damaged":
                if f.exists():          # recorded already (delete the file to redo it)
                    continue
                try:
                    print(record(a.folder, a.seed, a.count, f, dump=path))
                except RuntimeError as exc:   # crash itself cannot open this copy
                    print(f"{name}: not recorded: {str(exc)[:300]}")
            elif f.exists():
                bad |= check_dump(a.folder, path, [f])
        return bad
    if a.mode == "check":
        files = a.answers or sorted((GENERATED / a.folder.name).glob("seed*.jsonl.gz")) \
            or sorted((a.folder / "generated").glob("*.jsonl.gz"))
        return check(a.folder, files, a.dump)
    with tempfile.TemporaryDirectory(prefix="vmdex-live-") as tmp:
        # one --dump: crash reads that variant too (variant-dependent families count)
        dump = next((d for d in _dumps(a.folder) if a.dump and [d.name] == a.dump), None)
        out = record(a.folder, a.seed, a.count, Path(tmp) / "answers.jsonl.gz", dump)
        return check(a.folder, [out], a.dump)


if __name__ == "__main__":
    sys.exit(main())
