"""`vmdex smaps [--rollup] PID|TASK...` and `vmdex smaps --all`: /proc/PID/smaps and
/proc/PID/smaps_rollup as the dump's kernel printed them, from the rows ingest computed
(table vma_smaps, indexer.walk.smaps). This module only prints.

The lines and their order are the kernel's show_smap() / __show_smap() / show_smaps_rollup();
which figure lines a kernel has comes from the dump (smaps_layouts). A figure the dump cannot
give is printed as `?` and named, with the reason, in one line on stderr (exit status 1).
"""
from __future__ import annotations

from vmdex.indexer.errors import VmdexError

FIELDS = ("resident", "pss", "pss_dirty", "pss_anon", "pss_file", "pss_shmem",
          "shared_clean", "shared_dirty", "private_clean", "private_dirty", "referenced",
          "anonymous", "ksm", "lazyfree", "anonymous_thp", "shmem_thp", "file_thp",
          "shared_hugetlb", "private_hugetlb", "swap", "swap_pss", "pss_locked")
PSS = {"pss", "pss_dirty", "pss_anon", "pss_file", "pss_shmem", "swap_pss", "pss_locked"}
LINE_FIELD = {"Rss": "resident", "Pss": "pss", "Pss_Dirty": "pss_dirty",
              "Pss_Anon": "pss_anon", "Pss_File": "pss_file", "Pss_Shmem": "pss_shmem",
              "Shared_Clean": "shared_clean", "Shared_Dirty": "shared_dirty",
              "Private_Clean": "private_clean", "Private_Dirty": "private_dirty",
              "Referenced": "referenced", "Anonymous": "anonymous", "KSM": "ksm",
              "LazyFree": "lazyfree", "AnonHugePages": "anonymous_thp",
              "ShmemPmdMapped": "shmem_thp", "FilePmdMapped": "file_thp",
              "Shared_Hugetlb": "shared_hugetlb", "Private_Hugetlb": "private_hugetlb",
              "Swap": "swap", "SwapPss": "swap_pss", "Locked": "pss_locked"}
USAGE = "usage: vmdex [--dump NAME] smaps [--rollup] PID|TASK...  |  vmdex smaps --all\n"
ALL_COLUMNS = ["pid", "comm", "rss_kb", "pss_kb", "uss_kb", "swap_kb", "swap_pss_kb"]


def kb(field: str, value: int) -> int:
    return value >> (22 if field in PSS else 10)


def figure_line(label: str, value: int | None) -> str:
    v = "?" if value is None else str(value)
    if label == "Private_Hugetlb":        # the one line printed 17 + 7 wide
        return f"Private_Hugetlb: {v:>7} kB\n"
    return f"{label + ':':<16}{v:>8} kB\n"


class Smaps:
    def __init__(self, idx):
        self.idx = idx
        row = idx.c.one("SELECT lines FROM smaps_layouts WHERE dump_id = ?", (idx.id,))
        if row is None:
            raise VmdexError(f"dump {idx.name}: no smaps figures in the index (ingested by a "
                             "vmdex without smaps, or its kernel lacks what smaps needs: "
                             "see `vmdex sql \"SELECT * FROM ingest_errors\"`)")
        words = row[0].split()
        self.thp_width = 0
        for w in words:
            if w.startswith("%THPeligible="):   # a print width, not a figure line
                self.thp_width = int(w.split("=", 1)[1])
        self.lines = [w for w in words if not w.startswith("%")]

    def rows(self, mm: int):
        from vmdex.query.index import s64, u
        cols = ", ".join(("s.vma_seq", "v.vm_start", "v.vm_end", "s.header", "s.kernel_page_kb",
                          "s.mmu_page_kb", "s.thp_eligible", "s.protection_key", "s.vmflags",
                          *[f"s.{f}" for f in FIELDS], "s.unknown", "s.reason"))
        rows = self.idx.c.all(
            f"SELECT {cols} FROM vma_smaps s JOIN vmas v ON v.dump_id = s.dump_id AND "
            "v.mm = s.mm AND v.seq = s.vma_seq WHERE s.dump_id = ? AND s.mm = ? "
            "ORDER BY s.vma_seq", (self.idx.id, s64(mm)))
        return [(r[0], u(r[1]), u(r[2]), *r[3:]) for r in rows]

    def figures(self, rows, rollup: bool) -> tuple[list[str], list[str]]:
        """(the figure lines, what is unknown) of one VMA row or the sum of several."""
        sums = {f: 0 for f in FIELDS}
        unknown = 0
        reasons: list[str] = []
        for r in rows:
            for i, f in enumerate(FIELDS):
                sums[f] += r[9 + i]
            unknown |= r[9 + len(FIELDS)]
            why = r[10 + len(FIELDS)]
            if r[9 + len(FIELDS)] and why and why not in reasons:
                reasons.append(why)
        out, missing = [], []
        for key in self.lines:
            if key.startswith("@"):
                if not rollup:
                    continue
                key = key[1:]
            f = LINE_FIELD[key]
            bad = unknown >> FIELDS.index(f) & 1
            if bad:
                missing.append(key)
            out.append(figure_line(key, None if bad else kb(f, sums[f])))
        return out, missing + ([f"({'; '.join(reasons)})"] if missing and reasons else [])

    def full(self, mm: int) -> tuple[str, list[str]]:
        out: list[str] = []
        missing: list[str] = []
        for r in self.rows(mm):
            (seq, start, end, header, kps, mps, thp, pkey, vmflags) = r[:9]
            if header is None:
                missing.append(f"the header of VMA {start:x}-{end:x}")
                header = f"{start:08x}-{end:08x} ?"
            out.append(header + "\n")
            out.append(f"Size:           {(end - start) >> 10:>8} kB\n")
            out.append(f"KernelPageSize: {'?' if kps is None else kps:>8} kB\n")
            out.append(f"MMUPageSize:    {'?' if mps is None else mps:>8} kB\n")
            lines, miss = self.figures([r], False)
            out += lines
            if miss:
                missing.append(f"{', '.join(miss)} of VMA {start:x}-{end:x}")
            if thp is None:
                missing.append(f"THPeligible of VMA {start:x}-{end:x}")
            out.append(f"THPeligible:    {'?' if thp is None else thp:>{self.thp_width}}\n")
            if pkey is None:
                missing.append(f"ProtectionKey of VMA {start:x}-{end:x}")
                out.append(f"ProtectionKey:  {'?':>8}\n")
            elif pkey >= 0:
                out.append(f"ProtectionKey:  {pkey:>8}\n")
            out.append(f"VmFlags: {vmflags}\n")
        return "".join(out), missing

    def rollup(self, mm: int) -> tuple[str, list[str]]:
        rows = self.rows(mm)
        if not rows:
            return "", []
        head = f"{rows[0][1]:08x}-{rows[-1][2]:08x} ---p 00000000 00:00 0 ".ljust(72)
        lines, missing = self.figures(rows, True)
        return head + " [rollup]\n" + "".join(lines), missing

    def all_rows(self):
        """(pid, comm, Rss, Pss, USS, Swap, SwapPss) in kB per process, largest Pss first;
        None where a figure is unknown."""
        rows = self.idx.c.all(
            "SELECT pid, comm, rss_kb, pss_kb, uss_kb, swap_kb, swap_pss_kb FROM v_smaps_rollup "
            "WHERE dump_id = ?", (self.idx.id,))
        return sorted(rows, key=lambda r: (-(r[3] if r[3] is not None else -1), r[0]))


def parse(argv: list[str]) -> tuple[bool, bool, list[str]]:
    rollup = every = False
    words = []
    for a in argv:
        if a == "--rollup":
            rollup = True
        elif a == "--all":
            every = True
        elif a in ("-h", "--help"):
            raise VmdexError(USAGE.strip())
        elif a.startswith("-") and not a[1:].isdigit():
            raise VmdexError(f"smaps: unknown option {a} ({USAGE.strip()})")
        else:
            words.append(a)
    if every and (words or rollup):
        raise VmdexError("smaps: --all takes no PID or --rollup")
    if not every and not words:
        raise VmdexError(USAGE.strip())
    return rollup, every, words


def run_smaps(open_index, argv: list[str], out, fmt: str = "text") -> int:
    from vmdex.query.vm import resolve_task

    rollup, every, words = parse(argv)
    idx = open_index()
    sm = Smaps(idx)
    if every:
        return _write_all(sm, out, fmt)
    status = 0
    for w in words:
        tasks = resolve_task(idx, w)
        if tasks is None:
            out.err(f"smaps: invalid task or pid value: {w}\n")
            status = 1
            continue
        t = tasks[0]
        if not t.mm:        # a kernel thread: its smaps is empty, its smaps_rollup ESRCH
            if rollup:
                out.err(f"smaps: pid {t.pid} ({t.comm}) has no mm: the kernel gives no "
                        "smaps_rollup for it (No such process)\n")
                status = 1
            continue
        text, missing = (sm.rollup if rollup else sm.full)(t.mm)
        out.write(text)
        if missing:
            out.err(f"vmdex: smaps of pid {t.pid}: unknown: {'; '.join(missing)}\n")
            status = 1
    return status


def _write_all(sm: Smaps, out, fmt: str) -> int:
    from vmdex.query.render.tables import WRITERS

    rows = sm.all_rows()
    if fmt == "text":
        out.write(f"{'PID':>7}  {'COMM':<16} {'RSS':>9} {'PSS':>9} {'USS':>9} {'SWAP':>9} "
                  f"{'SWAPPSS':>9}  (kB)\n")
        for r in rows:
            vals = " ".join(f"{'?' if v is None else v:>9}" for v in r[2:])
            out.write(f"{r[0]:>7}  {r[1]:<16} {vals}\n")
    else:
        class _W:
            def write(self, s):
                out.write(s)
        WRITERS[fmt](ALL_COLUMNS, rows, _W())
    return 1 if any(v is None for r in rows for v in r[2:]) else 0
