"""Ingest with no vmlinux anywhere (the kernel's BTF and kallsyms from the dump itself):
every answer must be what the same dump ingested with its vmlinux gives.

Per fixture kernel: each oracle command (vm, foreach, ps, sys, help), every recorded
generated question (tests/generated/*/seed*.jsonl.gz, against crash's recorded answers,
as tests/test_generated.py does with the vmlinux), and every SMAPS line the guest kernel
printed. The only line allowed to differ is sys's KERNEL, which names what was read.
"""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests import fixturedata as F
from tests import smaps_spec as S
from tests.conftest import VMDEX, primary_variant, vmdex
from tests.generate import replay

KERNELS = F.kernels()
GENERATED = Path(__file__).resolve().parent / "generated"


def no_vmlinux_env(tmp: Path) -> dict:
    """No debug dir holds a vmlinux and no debuginfod server is asked."""
    empty = tmp / "no-debug"
    empty.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "DEBUGINFOD_URLS"}
    env["VMDEX_DEBUG_DIRS"] = str(empty)
    env["DEBUGINFOD_CACHE_PATH"] = str(empty / "cache")
    return env


@pytest.fixture(scope="module")
def btf_index(tmp_path_factory):
    """{kernel: (db, name)}: each fixture's primary dump ingested without a vmlinux."""
    tmp = tmp_path_factory.mktemp("btf")
    db = tmp / "vmdex.db"
    out = {}
    for k in KERNELS:
        name = f"{k}/{primary_variant(k)}"
        p = subprocess.run([VMDEX, "--db", str(db), "ingest", "--name", name,
                            str(F.dump(k, primary_variant(k)))],
                           env=no_vmlinux_env(tmp), stdin=subprocess.DEVNULL,
                           capture_output=True)
        out[k] = (db, name, p)
    return out


def _ingested(btf_index, kernel):
    db, name, p = btf_index[kernel]
    assert p.returncode == 0, p.stderr.decode()
    return db, name


@pytest.mark.parametrize("kernel", KERNELS)
def test_ingest_says_where_the_kernel_came_from(btf_index, kernel):
    db, name = _ingested(btf_index, kernel)
    said = btf_index[kernel][2].stderr
    # the second boot of a kernel takes the row its first dump left in the index
    assert b"(BTF and kallsyms from the dump)" in said or b"cached in the index)" in said
    rows = json.loads(vmdex("dumps", "--format", "json", db=db, check=True).stdout)
    assert {r["name"]: r["kernel_from"] for r in rows}[name] == "dump"


CASES = [(k, f, cmd) for k in KERNELS for f, cmd, _ in F.oracle_commands(k)]


@pytest.mark.parametrize("kernel,fname,cmd", CASES, ids=[f"{k[6:]}:{f}" for k, f, _ in CASES])
def test_same_answer_as_with_vmlinux(btf_index, oracle_index, kernel, fname, cmd):
    db, name = _ingested(btf_index, kernel)
    vdb, vname = oracle_index[kernel]
    got = vmdex("--dump", name, *cmd.split(), db=db)
    want = vmdex("--dump", vname, *cmd.split(), db=vdb)
    g, w = got.stdout, want.stdout
    if cmd.split()[0] == "sys":      # KERNEL names what was read: the vmlinux, or the dump
        g, w = (b"\n".join(x for x in s.split(b"\n") if not x.lstrip().startswith(b"KERNEL:"))
                for s in (g, w))
    assert (g, got.stderr, got.returncode) == (w, want.stderr, want.returncode), cmd


@pytest.mark.parametrize("kernel", [k for k in KERNELS
                                    if (GENERATED / k).is_dir()])
def test_generated_questions(btf_index, kernel):
    db, name = _ingested(btf_index, kernel)
    rows = [r for f in sorted((GENERATED / kernel).glob("seed*.jsonl.gz"))
            for r in replay.load_answers(f)]
    diffs: list[str] = []
    res = replay.compare(rows, str(db), name, diffs)
    same = sum(a for a, _ in res.values())
    asked = sum(b for _, b in res.values())
    # the same questions against the vmlinux index: those must agree exactly as often
    assert asked and same == asked, f"{same}/{asked}: " + "; ".join(diffs[:5])


@pytest.mark.parametrize("kernel", [k for k in KERNELS if S.has_smaps(F.kernel_dir(k))])
def test_smaps_lines(btf_index, kernel):
    db, name = _ingested(btf_index, kernel)

    def ask(args):
        p = vmdex("--dump", name, *args, db=db)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    diffs: list[str] = []
    same, total = S.compare(ask, F.kernel_dir(kernel) / "console.log", diffs)
    assert total and same == total, diffs[:3]


@pytest.mark.parametrize("kernel", KERNELS)
def test_types_match_dwarf(btf_index, oracle_index, kernel):
    """The graph read from BTF against the one read from DWARF: every wanted struct,
    typedef, enum and enumerator, array lengths, formats; the render trees exactly."""
    from tests.kernel_graphs import differences

    db, _ = _ingested(btf_index, kernel)
    vdb, _ = oracle_index[kernel]
    rel = F.release(kernel)

    def graph(path):
        con = sqlite3.connect(path)
        try:
            return json.loads(con.execute("SELECT types_json FROM kernels WHERE release = ?",
                                          (rel,)).fetchone()[0])
        finally:
            con.close()
    assert differences(graph(vdb), graph(db)) == []


# every symbol name the ingest looks up (indexer/), plus the ones arch code and gdbprint use
LOOKED_UP = ("__cpu_present_mask __per_cpu_offset __thp_vma_allowable_orders _end _stext "
             "_text arch_set_user_pkey_access avenrun boot_cpu_data clocksource_jiffies "
             "contig_page_data cpu_khz cpu_present_mask elf_hwcap expand_upwards high_memory "
             "highest_memmap_pfn hugepage_vma_check init_mm init_pid_ns init_top_pgt "
             "init_uts_ns kernel_config_data klp_transition_patch l1tf_mitigation linux_banner "
             "modules node_data nr_swapfiles page_offset_base panicmsg prb runqueues shmem_aops "
             "simple_dname special_mapping_name stat_nam swap_info swapper_pg_dir sysrq_pressed "
             "taint_flags tainted tainted_mask task_state_array timekeeper "
             "transparent_hugepage_flags vabits_actual vmalloc_base vmemmap_base xtime "
             "mnemonics.0 init_task panic_cpu crashing_cpu").split()


def _symtab(db, kernel: str):
    """The kernel's Symtab as an index stored it."""
    from vmdex.indexer.kernel.symtab import Symtab

    con = sqlite3.connect(db)
    try:
        return Symtab.from_bytes(bytes(con.execute(
            "SELECT symtab FROM kernels WHERE release = ?", (F.release(kernel),)).fetchone()[0]))
    finally:
        con.close()


@pytest.mark.parametrize("kernel", KERNELS)
def test_symbols_match_symtab(btf_index, oracle_index, kernel):
    """kallsyms gives every looked-up name the vmlinux .symtab's (unrelocated) address,
    and lacks exactly the names .symtab lacks."""
    dw, ks = _symtab(oracle_index[kernel][0], kernel), \
        _symtab(_ingested(btf_index, kernel)[0], kernel)
    assert {n: ks.address(n) for n in LOOKED_UP} == {n: dw.address(n) for n in LOOKED_UP}


@pytest.mark.parametrize("kernel", KERNELS)
def test_pointer_symbols_are_gdbs_or_unsure(btf_index, oracle_index, kernel):
    """The kallsyms-made table (no sizes) against the vmlinux's .symtab. Every data
    object's first byte: gdb's name. The bytes just before each page-aligned symbol (where
    a page of padding may follow a small object): gdb's <symbol+off>, or marked unsure
    (printed bare with a stderr line), never a name gdb would not print."""
    import numpy as np

    from vmdex.indexer.kernel.symtab import BSS, DATA, UNSURE

    dw, ks = _symtab(oracle_index[kernel][0], kernel), \
        _symtab(_ingested(btf_index, kernel)[0], kernel)
    assert ks.certain is not None and dw.certain is None
    from vmdex.query import structs
    assert structs.UNSURE == UNSURE        # the query side's copy of the mark
    # objects in the image (5.10's per-CPU symbols are offsets from 0, absolute in kallsyms)
    stext = np.uint64(dw.address("_stext"))
    end = np.uint64(dw.address("_end"))           # [_text, _end): crash's kernel image
    data = np.isin(dw.kind, (DATA, BSS)) & (dw.size > 0) & (dw.addr >= stext) & \
        (dw.addr < end)
    starts = dw.addr[data]
    # not the linker's region marks, which kallsyms' table takes as size 0 (gdb's rule for
    # them is another matter, tested with the oracle)
    at = np.searchsorted(ks.addr, starts, side="right") - 1
    starts = starts[ks.size[at] > 0].tolist()
    assert len(starts) > 1000
    for a in starts:
        assert ks.symbolize(a) == dw.symbolize(a), hex(a)
    paged = ks.addr[(ks.addr >= stext) & (ks.addr < end) &
                    ((ks.addr & np.uint64(4095)) == 0)].tolist()
    unsure = 0
    for a in paged:
        for p in (a - 1, a - 8, a - 64):
            if int(ks.kind[np.searchsorted(ks.addr, np.uint64(p), side="right") - 1]) \
                    not in (DATA, BSS):
                continue                    # data objects only (code is not padded so)
            got = ks.symbolize(p)
            if got is not None and got.startswith(UNSURE):
                unsure += 1
            elif got is not None:
                assert got == dw.symbolize(p), (hex(p), got, dw.symbolize(p))
    assert unsure > 0


def test_a_vmlinux_later_replaces_the_dump_row(tmp_path):
    """The kernels row read from a dump is replaced by the vmlinux's when a later ingest
    of the same build has one; --vmlinux-from-dump never replaces a vmlinux's row."""
    k = next(k for k in KERNELS if "6.1" in k)
    db, dump = tmp_path / "i.db", str(F.dump(k, primary_variant(k)))

    def source():
        con = sqlite3.connect(db)
        try:
            return con.execute("SELECT source FROM kernels").fetchall()
        finally:
            con.close()
    vmdex("ingest", "--vmlinux-from-dump", "--name", "a", dump, db=db, check=True)
    assert source() == [("dump",)]
    vmdex("ingest", "--vmlinux", str(F.vmlinux(k)), "--name", "b", dump, db=db, check=True)
    assert source() == [("vmlinux",)]
    vmdex("ingest", "--vmlinux-from-dump", "--name", "c", dump, db=db, check=True)
    assert source() == [("vmlinux",)]
    # each dump still says what it was ingested with, whatever the kernel row became
    rows = json.loads(vmdex("dumps", "--format", "json", db=db, check=True).stdout)
    assert {r["name"]: r["kernel_from"] for r in rows} == {"a": "dump", "b": "vmlinux",
                                                           "c": "dump"}
    p = vmdex("ingest", "--vmlinux-from-dump", "--vmlinux", "x", dump, db=db)
    assert p.returncode == 2 and p.stderr.count(b"\n") == 1


ARM64_61 = Path.home() / ".cache" / "vmdex-matrix" / "arm64-bookworm-cloud" / "vmcore.mdf-c-d31"


def test_kernel_without_kallsyms_all_is_refused(tmp_path):
    """Debian arm64 6.1: kallsyms lists functions only; one line, nothing stored. (The
    dump is the kernel matrix's arm64-bookworm-cloud row, which tests/test_matrix.py, run
    first, builds: looked for when the test runs, not when it is collected.)"""
    if not ARM64_61.is_file():
        pytest.skip("no Debian arm64 6.1 dump at hand (the matrix row is not built)")
    db = tmp_path / "i.db"
    p = subprocess.run([VMDEX, "--db", str(db), "ingest", str(ARM64_61)],
                       env=no_vmlinux_env(tmp_path), capture_output=True)
    assert p.returncode == 2 and p.stderr.count(b"\n") == 1, p.stderr
    assert b"built without CONFIG_KALLSYMS_ALL" in p.stderr
    assert b"a vmlinux is needed" in p.stderr and b"no vmlinux found: looked in" in p.stderr
    assert json.loads(vmdex("dumps", "--format", "json", db=db, check=True).stdout) == []
