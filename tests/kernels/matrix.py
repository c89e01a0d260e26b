"""The kernel matrix: build fresh dumps of Debian kernels, ingest every dump format, and
compare vmdex with crash 9.0.2 on each dump's whole oracle.

    .venv/bin/python -m tests.kernels.matrix [--only NAME,...] [--no-build] [--doc]

Rows come from tests/kernels/kernels.tsv (name, suite, abi or "current", flavour,
make-dumps options). Each dump folder is built by ../shared/fixtures/tools/make-dumps.sh
(root, QEMU TCG, the Debian archive, crash from a sid chroot) into $VMDEX_MATRIX_CACHE
(default ~/.cache/vmdex-matrix/NAME) and kept: a row is rebuilt only when its folder is
missing or incomplete, or when "current" now names another kernel (a new sid kernel is
tested the day it appears). Every vmcore.* of a folder is ingested into a fresh SQLite
index and every vm/foreach command of oracle/commands.tsv is compared byte for byte, exit
status included; then the question generator (tests/generate) asks its seeded questions
where the folder holds crash's answers for them.

Prints one table (also written into docs/verified.md between its matrix markers with
--doc) and exits non-zero when a row is not identical or could not be built.
"""
from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:       # run as a script: tests.* (smaps spec, generator) importable
    sys.path.insert(0, str(REPO))
HERE = Path(__file__).resolve().parent
TOOLS = Path(os.environ.get("VMDEX_FIXTURE_TOOLS", REPO.parent / "shared" / "fixtures" / "tools"))
VMDEX = str(Path(sys.executable).parent / "vmdex")
DOC = REPO / "docs" / "verified.md"
BEGIN, END = "<!-- matrix:begin -->", "<!-- matrix:end -->"


def matrix_cache() -> Path:
    env = os.environ.get("VMDEX_MATRIX_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "vmdex-matrix"


@dataclass
class Row:
    name: str
    suite: str
    abi: str
    flavour: str
    options: list[str]

    @property
    def folder(self) -> Path:
        return matrix_cache() / self.name

    def make_args(self) -> list[str]:
        args = ["--suite", self.suite, "--flavour", self.flavour]
        if self.abi != "current":
            args += ["--abi", self.abi]
        opts = list(self.options)
        for i in range(1, len(opts)):   # --extra DIR: a folder of this repository
            if opts[i - 1] == "--extra" and not os.path.isabs(opts[i]):
                opts[i] = str(REPO / opts[i])
        return args + opts


@dataclass
class Result:
    row: Row
    release: str = "?"
    paging: str = "?"
    formats: dict[str, tuple[int, int]] = field(default_factory=dict)  # variant -> (same, asked)
    questions: tuple[int, int] | None = None
    smaps: tuple[int, int] | None = None     # kernel's SMAPS lines: (identical, printed)
    error: str = ""
    # the same checks with the kernel read from the dump (no vmlinux): (identical, asked)
    # over oracle commands, generated questions and SMAPS lines together; or the refusal
    without: tuple[int, int] | None = None
    refused: str = ""                        # one-line refusal when the kernel config says so

    @property
    def identical(self) -> bool:
        return (not self.error and bool(self.formats)
                and all(a == b for a, b in self.formats.values())
                and (self.questions is None or self.questions[0] == self.questions[1])
                and (self.smaps is None or self.smaps[0] == self.smaps[1])
                and (self.without is None or self.without[0] == self.without[1]))


def read_rows(path: Path = HERE / "kernels.tsv") -> list[Row]:
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, suite, abi, flavour, *opts = line.split("\t")
        rows.append(Row(name, suite, abi, flavour, shlex.split(opts[0]) if opts else []))
    return rows


def current_kver(row: Row) -> str | None:
    """The kernel make-dumps.sh would build for this row now (ABI-FLAVOUR)."""
    p = subprocess.run(["bash", str(TOOLS / "make-dumps.sh"), *row.make_args(), "--print-kver"],
                       capture_output=True, text=True, timeout=600)
    lines = p.stdout.strip().splitlines()
    return lines[-1].strip() if p.returncode == 0 and lines else None


def built_kver(folder: Path) -> str | None:
    info = folder / "build-info.txt"
    if not info.is_file():
        return None
    for line in info.read_text().splitlines():
        if line.startswith("kver:") or line.startswith("kernel:"):
            return line.split(":", 1)[1].split()[0]
    return None


def is_complete(folder: Path) -> bool:
    return ((folder / "oracle" / "commands.tsv").is_file()
            and (folder / "oracle" / "foreach-vm-p.txt.gz").is_file()
            and any(folder.glob("vmcore.*")) and (folder / "vmlinux").exists())


def build(row: Row, log) -> str:
    """Build (or reuse) the row's dump folder; returns an error text or ''."""
    want = current_kver(row) if row.abi == "current" else None
    folder = row.folder
    if is_complete(folder) and (want is None or built_kver(folder) in (None, want)):
        return ""
    if folder.exists():
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["bash", str(TOOLS / "make-dumps.sh"), *row.make_args(), "--no-slim", "--out",
           str(folder)]
    err = ""
    for attempt in (1, 2):      # a TCG guest now and then hangs early in boot: try again
        print(f"[matrix] building {row.name} (try {attempt}): {shlex.join(cmd)}", file=log,
              flush=True)
        code = _run_bounded(cmd, matrix_cache() / f"{row.name}.log", BUILD_TIMEOUT)
        if code == 0 and is_complete(folder):
            return ""
        tail = (matrix_cache() / f"{row.name}.log").read_text(errors="replace").splitlines()[-3:]
        err = f"make-dumps.sh failed ({code}): {' / '.join(tail)}"
        if "did not become ready" not in err and code != "timeout":
            break
        shutil.rmtree(folder, ignore_errors=True)
    return err


# A dump folder takes 3-8 min with cached packages, ~10 from nothing; a hung guest is given up.
BUILD_TIMEOUT = int(os.environ.get("VMDEX_MATRIX_BUILD_TIMEOUT", "900"))


def _run_bounded(cmd: list[str], log_path: Path, timeout: int):
    """Run cmd in its own process group (make-dumps.sh starts QEMU and crash); on timeout
    the whole group is killed. Returns the exit code or "timeout"."""
    import signal

    with open(log_path, "w") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            out.write(f"\n[matrix] killed after {timeout} s\n")
            return "timeout"


def oracle_cases(folder: Path) -> list[tuple[str, str]]:
    rows = []
    for line in (folder / "oracle" / "commands.tsv").read_text().splitlines():
        if line and not line.startswith("#"):
            fname, cmd = line.split("\t")[:2]
            if cmd.split()[0] in ("vm", "foreach", "ps"):
                rows.append((fname, cmd))
    return rows


def expected(folder: Path, fname: str) -> bytes:
    path = folder / "oracle" / fname
    return gzip.open(path).read() if fname.endswith(".gz") else path.read_bytes()


def ask(db: Path, name: str, cmd: str, merge: bool) -> subprocess.CompletedProcess:
    return subprocess.run([VMDEX, "--db", str(db), "--dump", name, *shlex.split(cmd)],
                          stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT if merge else subprocess.DEVNULL)


def compare_oracle(folder: Path, db: Path, name: str, diffs: list[str]) -> tuple[int, int]:
    same = 0
    cases = oracle_cases(folder)
    from tests.generate.replay import crash_reported_error

    for fname, cmd in cases:
        # an error file, or crash's error words in one filed by its role (make-dumps names
        # `vm -P VMA` with no pid by role, and the panic task may not have that VMA)
        is_err = fname.startswith("err.") or crash_reported_error(expected(folder, fname))
        p = ask(db, name, cmd, is_err)
        ok = p.stdout == expected(folder, fname) and ((p.returncode != 0) == is_err)
        same += ok
        if not ok:
            diffs.append(f"{name}: {cmd}")
    return same, len(cases)


def smaps_dump(folder: Path) -> str | None:
    """The dump whose smaps is checked: a makedumpfile one when there is one."""
    names = sorted(d.name for d in folder.glob("vmcore.*"))
    mdf = [n for n in names if n.startswith("vmcore.mdf")]
    return (mdf or names or [None])[0]


def compare_smaps(folder: Path, db: Path, diffs: list[str]) -> tuple[int, int] | None:
    """`vmdex smaps` against the kernel's own SMAPS lines in console.log: (identical lines,
    printed lines), or None when the guest printed none."""
    from tests import smaps_spec

    name = smaps_dump(folder)
    if name is None or not smaps_spec.has_smaps(folder):
        return None

    def ask_smaps(args: list[str]):
        p = subprocess.run([VMDEX, "--db", str(db), "--dump", name, *args],
                           capture_output=True, text=True)
        return p.returncode, p.stdout, p.stderr

    local: list[str] = []
    got = smaps_spec.compare(ask_smaps, folder / "console.log", local)
    diffs.extend(f"{folder.name}/{name}: {d}" for d in local)
    return got


def release_of(folder: Path) -> str:
    for line in (folder / "oracle" / "sys.txt").read_text().splitlines():
        if line.strip().startswith("RELEASE:"):
            return line.split(":", 1)[1].strip()
    return "?"


def paging_of(db: Path, name: str) -> str:
    p = subprocess.run([VMDEX, "--db", str(db), "sql", "--format", "csv",
                        f"SELECT paging_levels, arch FROM dumps WHERE name = '{name}'"],
                       capture_output=True, text=True)
    lines = p.stdout.split()
    if p.returncode != 0 or len(lines) < 2:
        return "?"
    levels, arch = lines[-1].split(",")
    return f"{levels}-level" + (f" ({arch})" if arch != "x86_64" else "")


def check(row: Row, diffs: list[str], questions: int = 300) -> Result:
    res = Result(row)
    folder = row.folder
    res.release = release_of(folder)
    vmlinux = folder / "vmlinux"
    with tempfile.TemporaryDirectory(prefix="vmdex-matrix-") as tmp:
        db = Path(tmp) / "vmdex.db"
        from tests.generate.replay import dump_sets

        for name, files in dump_sets(list(folder.glob("vmcore.*"))):
            p = subprocess.run([VMDEX, "--db", str(db), "ingest", "--vmlinux", str(vmlinux),
                                "--name", name, *map(str, files)], capture_output=True,
                               text=True)
            if p.returncode != 0:
                res.formats[name] = (0, len(oracle_cases(folder)))
                diffs.append(f"{row.name}/{name}: ingest failed: {p.stderr.strip()[:300]}")
                continue
            if res.paging == "?":
                res.paging = paging_of(db, name)
            res.formats[name] = compare_oracle(folder, db, name, diffs)
        res.smaps = compare_smaps(folder, db, diffs)
        sys_same = compare_sys(folder, Path(tmp) / "sys.db", diffs)
        if sys_same is not None:      # counted with the primary dump's oracle commands
            from tests.generate.__main__ import primary
            name = primary(folder).name
            a, b = res.formats.get(name, (0, 0))
            res.formats[name] = (a + sys_same, b + 1)
        res.questions = ask_generated(folder, db, diffs, questions)
        res.without, res.refused = check_without_vmlinux(folder, Path(tmp) / "btf.db", diffs)
    return res


def kernel_config(folder: Path) -> dict[str, str]:
    """The row kernel's build config (CONFIG_X -> value; "n" when not set), from the
    package make-dumps.sh unpacked into the fixture cache."""
    cache = Path(os.environ.get("VMDEX_FIXTURE_CACHE",
                                Path.home() / ".cache" / "vmdex-fixtures"))
    kver = built_kver(folder) or ""
    out: dict[str, str] = {}
    for path in (cache / "k" / kver / "img" / "boot").glob(f"config-{kver}"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("CONFIG_"):
                key, _, value = line.partition("=")
                out[key] = value
            elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
                out[line[2:].split()[0]] = "n"
    return out


def config_from_vmlinux(vmlinux: Path) -> dict[str, str]:
    """What the two options left in the vmlinux file (packages without a config, 7.x):
    a .BTF section; kallsyms_num_syms (in its .rodata) beyond the .symtab's functions,
    so kallsyms lists data symbols too. Read with pyelftools, not vmdex's own readers."""
    from elftools.elf.elffile import ELFFile

    out: dict[str, str] = {}
    with open(vmlinux, "rb") as f:
        elf = ELFFile(f)
        out["CONFIG_DEBUG_INFO_BTF"] = "y" if elf.get_section_by_name(".BTF") else "n"
        symtab = elf.get_section_by_name(".symtab")
        funcs, num = 0, None
        for sym in symtab.iter_symbols():
            if sym["st_info"]["type"] == "STT_FUNC":
                funcs += 1
            elif sym.name == "kallsyms_num_syms":
                num = sym
        if num is not None:
            sec = elf.get_section(num["st_shndx"])
            f.seek(sec["sh_offset"] + num["st_value"] - sec["sh_addr"])
            count = int.from_bytes(f.read(4), "little")
            out["CONFIG_KALLSYMS_ALL"] = "y" if count > funcs else "n"
    return out


def expected_refusal(folder: Path) -> str | None:
    """Why the kernel cannot be read from its dump, by its config (the package's, else
    what the vmlinux shows): None when it can (BTF and kallsyms with data symbols)."""
    cfg = kernel_config(folder) or config_from_vmlinux(folder / "vmlinux")
    if "CONFIG_KALLSYMS_ALL" not in cfg:
        return "?"
    if cfg.get("CONFIG_DEBUG_INFO_BTF") != "y":
        return "CONFIG_DEBUG_INFO_BTF"
    if cfg.get("CONFIG_KALLSYMS_ALL") != "y":
        return "CONFIG_KALLSYMS_ALL"
    return None


def ingest_without_vmlinux(folder: Path, db: Path) -> str:
    """Every dump of the folder into `db` with the kernel read from the dump itself; ''
    or the first one-line refusal."""
    from tests.generate.replay import dump_sets

    for name, files in dump_sets(list(folder.glob("vmcore.*"))):
        p = subprocess.run([VMDEX, "--db", str(db), "ingest", "--vmlinux-from-dump",
                            "--name", name, *map(str, files)], capture_output=True, text=True)
        if p.returncode != 0:
            return p.stderr.strip()
    return ""


def check_without_vmlinux(folder: Path, db: Path, diffs: list[str]):
    """((identical, asked) over the oracle, the generated questions and SMAPS lines with
    the kernel read from the dump, or None), refusal text. A refusal counts as right
    only when the kernel's config lacks BTF or KALLSYMS_ALL and the line says which."""
    refusal = ingest_without_vmlinux(folder, db)
    want = expected_refusal(folder)
    if refusal:
        if want and want != "?" and want in refusal and refusal.count("\n") == 0:
            return None, f"refused ({want} not set)"
        diffs.append(f"{folder.name}: without a vmlinux: {refusal[:300]}")
        return (0, 1), ""
    if want not in (None, "?"):
        diffs.append(f"{folder.name}: read without a vmlinux though {want} is not set")
        return (0, 1), ""
    from tests.generate.replay import dump_sets

    same = asked = 0
    for name, _files in dump_sets(list(folder.glob("vmcore.*"))):
        a, b = compare_oracle(folder, db, name, diffs)
        same, asked = same + a, asked + b
    from tests.generate import replay

    for got in (compare_smaps(folder, db, diffs), replay.replay_folder(folder, db, diffs)):
        if got is not None:
            same, asked = same + got[0], asked + got[1]
    return (same, asked), ""


def compare_sys(folder: Path, db: Path, diffs: list[str]) -> int | None:
    """`sys` against oracle/sys.txt: the dump ingested under the names crash was given
    (KERNEL and DUMPFILE print them; make-dumps runs crash on relative or absolute paths),
    from the folder. 1 identical, 0 not, None when the folder has no sys.txt."""
    want = folder / "oracle" / "sys.txt"
    if not want.is_file():
        return None
    named = {}
    for line in want.read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("KERNEL", "DUMPFILE"):
            named[key.strip()] = value.strip().split("  [")[0]
    if set(named) != {"KERNEL", "DUMPFILE"}:
        diffs.append(f"{folder.name}: oracle/sys.txt names no KERNEL or DUMPFILE")
        return 0
    p = subprocess.run([VMDEX, "--db", str(db), "ingest", "--vmlinux", named["KERNEL"],
                        *named["DUMPFILE"].split()], cwd=folder, capture_output=True, text=True)
    if p.returncode != 0:
        diffs.append(f"{folder.name}: sys ingest failed: {p.stderr.strip()[:300]}")
        return 0
    got = subprocess.run([VMDEX, "--db", str(db), "sys"], capture_output=True)
    ok = got.stdout == want.read_bytes() and got.returncode == 0
    if not ok:
        diffs.append(f"{folder.name}: sys")
    return int(ok)


def ask_generated(folder: Path, db: Path, diffs: list[str], count: int) -> tuple[int, int] | None:
    """`count` generated questions (seeded by the release), asked once of live crash on
    the folder's primary dump and kept in FOLDER/generated/, then of vmdex on every dump
    of the folder: (identical, asked)."""
    from tests.generate import __main__ as G
    from tests.generate import replay

    if count <= 0:
        return None
    seed = sum(release_of(folder).encode())
    answers = folder / "generated" / f"seed{seed}-n{count}.jsonl.gz"
    if not answers.exists():
        G.record(folder, seed, count, answers)
    return replay.replay_folder(folder, db, diffs)


def table(results: list[Result], date: str) -> str:
    out = ["| name | kernel | suite | flavour | paging | dumps (oracle commands identical) "
           "| generated questions | smaps lines | no vmlinux (BTF + kallsyms) | date | result |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        fmts = ", ".join(f"{v.removeprefix('vmcore.')} {a}/{b}" for v, (a, b) in r.formats.items())
        q = f"{r.questions[0]}/{r.questions[1]}" if r.questions else "-"
        sm = f"{r.smaps[0]}/{r.smaps[1]}" if r.smaps else "-"
        nv = r.refused or (f"{r.without[0]}/{r.without[1]}" if r.without else "-")
        verdict = "identical" if r.identical else ("FAILED: " + r.error if r.error else "DIFFERS")
        out.append(f"| {r.row.name} | {r.release} | {r.row.suite} | {r.row.flavour} | "
                   f"{r.paging} | {fmts or '-'} | {q} | {sm} | {nv} | {date} | {verdict} |")
    return "\n".join(out) + "\n"


def merge_tables(old: str, new: str) -> str:
    """The doc's table with `new`'s rows put in place of the rows of the same name (a run
    with --only must not drop the rows it did not check); rows new to the doc go last."""
    def rows(text: str) -> list[str]:
        return [l for l in text.splitlines() if l.startswith("| ")
                and not l.startswith("| name ") and not l.startswith("| ---")]

    def name(line: str) -> str:
        return line.split("|")[1].strip()

    fresh = {name(l): l for l in rows(new)}
    kept = [fresh.pop(name(l), l) for l in rows(old)]
    head = new.splitlines()[:2]
    return "\n".join(head + kept + list(fresh.values())) + "\n"


def without_vmlinux_only(rows: list[Row], doc: bool) -> int:
    """The no-vmlinux checks of built rows, each written into its doc row's column."""
    ok = True
    for row in rows:
        if not is_complete(row.folder):
            continue
        diffs: list[str] = []
        with tempfile.TemporaryDirectory(prefix="vmdex-matrix-") as tmp:
            without, refused = check_without_vmlinux(row.folder, Path(tmp) / "btf.db", diffs)
        cell = refused or f"{without[0]}/{without[1]}"
        same = refused or without[0] == without[1]
        ok &= bool(same)
        print(f"[matrix] {row.name}: without vmlinux {cell}", *diffs[:20], sep="\n  ",
              file=sys.stderr, flush=True)
        if doc:
            set_doc_cell(row.name, cell, same)
    return 0 if ok else 1


def set_doc_cell(name: str, cell: str, same: bool) -> None:
    """Put `cell` in the no-vmlinux column of the doc row `name` (a row written before
    the column existed gains it); a difference marks the row's result."""
    doc = DOC.read_text()
    head, rest = doc.split(BEGIN, 1)
    block, tail = rest.split(END, 1)
    lines = block.strip("\n").splitlines()
    width = len(lines[0].split("|")) - 2
    out = []
    for line in lines:
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if cells and cells[0] == name:
            if len(cells) == width - 1:            # before the column: date, result follow
                cells.insert(len(cells) - 2, "-")
            cells[-3] = cell
            if not same:
                cells[-1] = "DIFFERS (without a vmlinux)"
            elif cells[-1] == "DIFFERS (without a vmlinux)":
                cells[-1] = "identical"
            line = "| " + " | ".join(cells) + " |"
        out.append(line)
    DOC.write_text(head + BEGIN + "\n" + "\n".join(out) + "\n" + END + tail)


def write_doc(text: str) -> None:
    doc = DOC.read_text() if DOC.exists() else ""
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        old, tail = rest.split(END, 1)
        doc = head + f"{BEGIN}\n{merge_tables(old, text)}{END}" + tail
    else:
        doc += f"\n{BEGIN}\n{text}{END}\n"
    DOC.write_text(doc)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated row names")
    ap.add_argument("--rows", type=Path, default=HERE / "kernels.tsv")
    ap.add_argument("--no-build", action="store_true", help="check only folders already built")
    ap.add_argument("--doc", action="store_true", help="write the table into docs/verified.md")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--questions", type=int, default=300,
                    help="generated questions per row, asked of live crash (0: none)")
    ap.add_argument("--no-vmlinux-only", action="store_true",
                    help="built rows only: the checks without a vmlinux, into the doc "
                         "table's column (the rest of each row stays)")
    a = ap.parse_args(argv)
    rows = read_rows(a.rows)
    if a.only:
        want = set(a.only.split(","))
        rows = [r for r in rows if r.name in want]
    if a.no_vmlinux_only:
        return without_vmlinux_only(rows, a.doc)
    results, diffs = [], []
    for row in rows:
        err = "" if a.no_build else build(row, sys.stderr)
        if a.no_build and not is_complete(row.folder):
            err = "not built"
        res = Result(row, error=err) if err else check(row, diffs, a.questions)
        results.append(res)
        print(f"[matrix] {row.name}: {'identical' if res.identical else 'NOT identical'} "
              f"{res.formats} {res.questions or ''} smaps {res.smaps} "
              f"without vmlinux {res.refused or res.without} {res.error}",
              file=sys.stderr, flush=True)
    date = datetime.date.today().isoformat()
    text = table(results, date)
    print(text, end="")
    for d in diffs[:200]:
        print("  differs:", d)
    if a.doc:
        write_doc(text)
    if a.json:
        a.json.write_text(json.dumps([{
            "name": r.row.name, "release": r.release, "paging": r.paging,
            "formats": r.formats, "questions": r.questions, "smaps": r.smaps,
            "without_vmlinux": r.without, "refused": r.refused, "error": r.error,
            "identical": r.identical} for r in results], indent=1))
    return 0 if results and all(r.identical for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
