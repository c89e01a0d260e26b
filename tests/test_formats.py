"""Forms the oracle does not cover directly: foreach filters and the json/csv formats.
Expectations are derived from crash's own output on the same dump (ps, foreach vm, vm -p)."""
from __future__ import annotations

import csv
import io
import json
import re

import pytest

from tests import fixturedata as F
from tests.conftest import vmdex

KERNELS = F.kernels()


def oracle_text(kernel, fname):
    return (F.oracle_dir(kernel) / fname).read_text()


def foreach_blocks(kernel) -> dict[str, str]:
    """Task address → that task's block of `foreach vm` (without the separating blank)."""
    text = oracle_text(kernel, "foreach-vm.txt")
    blocks = ["PID: " + b for b in text[len("PID: "):].split("\n\nPID: ")]
    return {re.search(r"TASK: ([0-9a-f]+)", b).group(1): b.rstrip("\n") + "\n" for b in blocks}


def ps_rows(kernel):
    rows = []
    for line in oracle_text(kernel, "ps.txt").splitlines()[1:]:
        f = line.lstrip(">").split()
        rows.append({"pid": int(f[0]), "task": f[3], "comm": f[-1]})
    return rows


def expected_foreach(kernel, keep) -> bytes:
    blocks = foreach_blocks(kernel)
    return "\n".join(blocks[r["task"]] for r in ps_rows(kernel) if keep(r)).encode()


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("selector,keep", [
    ("user", lambda r: not r["comm"].startswith("[")),
    ("kernel", lambda r: r["comm"].startswith("[")),
    ("'^wl_(anon|swap)$'", lambda r: r["comm"] in ("wl_anon", "wl_swap")),
    ("wl_threads", lambda r: r["comm"] == "wl_threads"),
])
def test_foreach_filters(oracle_index, kernel, selector, keep):
    db, name = oracle_index[kernel]
    p = vmdex("--dump", name, "foreach", selector, "vm", db=db)
    assert p.returncode == 0, p.stderr
    assert p.stdout == expected_foreach(kernel, keep)


@pytest.mark.parametrize("kernel", KERNELS)
def test_foreach_pids_and_gleader(oracle_index, kernel):
    db, name = oracle_index[kernel]
    roles = json.loads(oracle_text(kernel, "cases.json"))["roles"]
    pids = [roles["filemap"], roles["anon"]]
    p = vmdex("--dump", name, "foreach", *map(str, pids), "vm", db=db)
    assert p.stdout == expected_foreach(kernel, lambda r: r["pid"] in pids)
    # gleader drops the non-leader threads of wl_threads (same comm and mm as the leader).
    thread = roles["threads-thread"]
    p = vmdex("--dump", name, "foreach", "wl_threads", "gleader", "vm", db=db)
    leader = roles["threads"]
    assert p.stdout == expected_foreach(kernel, lambda r: r["pid"] == leader)
    assert f"PID: {thread} ".encode() not in p.stdout


def page_facts(text: str) -> list[tuple]:
    """(virtual, kind, value...) for every page line of crash's vm -p text."""
    out = []
    for line in text.splitlines():
        f = line.split()
        if not f or not re.fullmatch(r"[0-9a-f]+", f[0]) or len(f[0]) == 16:
            continue
        if len(f) == 2 and re.fullmatch(r"[0-9a-f]+", f[1]):
            out.append((f[0], "present", f[1]))
        elif f[1] == "SWAP:":
            out.append((f[0], "swap", f[2], int(f[4])))
        elif f[1] == "FILE:":
            out.append((f[0], "file", f[2], f[4]))
        elif f[1:] == ["(not", "mapped)"]:
            out.append((f[0], "not_mapped"))
    return out


def json_page_facts(doc) -> list[tuple]:
    out = []
    for t in doc["tasks"]:
        for v in t.get("vmas", []):
            for pg in v.get("pages", []):
                k = pg["kind"]
                out.append((pg["virtual"], k) + {
                    "present": (pg.get("physical"),), "swap": (pg.get("device"), pg.get("offset")),
                    "file": (pg.get("file"), pg.get("offset")), "not_mapped": ()}[k])
    return out


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("role,fname", [("swap", "vm-p.swap.txt"), ("filemap", "vm-p.filemap.txt"),
                                        ("huge", "vm-p.huge.txt")])
def test_json_pages_carry_the_same_facts(oracle_index, kernel, role, fname):
    db, name = oracle_index[kernel]
    pid = json.loads(oracle_text(kernel, "cases.json"))["roles"][role]
    p = vmdex("--dump", name, "--format", "json", "vm", "-p", str(pid), db=db)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert json_page_facts(doc) == page_facts(oracle_text(kernel, fname))
    lines = oracle_text(kernel, fname).splitlines()
    vmas_text = [lines[i + 1].split()[0] for i, ln in enumerate(lines)
                 if ln.strip().startswith("VMA ")]  # the line after each VMA header
    assert [v["vma"] for v in doc["tasks"][0]["vmas"]] == vmas_text


@pytest.mark.parametrize("kernel", KERNELS)
def test_csv_reverse_map_lists_every_task_crash_found(oracle_index, kernel):
    db, name = oracle_index[kernel]
    cases = json.loads(oracle_text(kernel, "cases.json"))
    p = vmdex("--dump", name, "--format", "csv", "foreach", "vm", "-R", cases["phys_anon"], db=db)
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader(io.StringIO(p.stdout.decode())))
    want_pids = [int(m) for m in re.findall(r"^PID: (\d+)", oracle_text(
        kernel, "foreach-vm-R.phys-anon.txt"), re.M)]
    assert [int(r["pid"]) for r in rows] == want_pids
    assert {r["physical"] for r in rows} == {cases["phys_anon"]}
    assert all(r["kind"] == "present" for r in rows)


@pytest.mark.parametrize("kernel", KERNELS)
def test_json_flags_and_errors(oracle_index, kernel):
    db, name = oracle_index[kernel]
    p = vmdex("--dump", name, "--format", "json", "vm", "-f", "8100073", db=db)
    names = oracle_text(kernel, "vm-f.8100073.txt").split("(")[1].rstrip(")\n").split("|")
    assert json.loads(p.stdout)["flags"] == {"value": "8100073", "names": names}
    p = vmdex("--dump", name, "--format", "json", "vm", "99999", db=db)
    assert p.returncode != 0
    assert json.loads(p.stdout)["messages"] == ["vm: invalid task or pid value: 99999"]
