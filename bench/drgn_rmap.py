"""One reverse-map question answered with drgn 0.3.0, the way crash's `foreach vm -R PHYS`
answers it: which tasks map the physical page PHYS, and at which virtual address.

    drgn -c VMCORE -s VMLINUX bench/drgn_rmap.py PHYS [--quiet]

What a drgn user would write: every task with an mm (each mm walked once, its threads
reported with it), its VMAs from drgn's for_each_vma() (the 6.1 maple tree), and its page
tables read a whole table page at a time (prog.read(..., physical=True)) and decoded with
array('Q'), descending only into entries a VMA overlaps (as crash does; one follow_phys()
per page would be hundreds of times slower on 2 GiB of mappings). x86-64 only (4- or 5-level).
Output: crash's task header, then `VIRTUAL PHYSICAL` per mapping; the last line on stderr
is the count of matching tasks and pages walked.
"""
import sys
from array import array
from bisect import bisect_right

from drgn.helpers.linux.mm import for_each_vma, virt_to_phys
from drgn.helpers.linux.pid import for_each_task

_P, _PSE, _PROTNONE = 0x1, 0x80, 0x100
PHYS_MASK = (1 << 46) - 1          # crash's x86-64 4-level mask (52 bits with 5 levels)
PAGE = 4096

prog = globals()["prog"]   # drgn's script namespace

args = [a for a in sys.argv[1:] if not a.startswith("--")]
quiet = "--quiet" in sys.argv
target = int(args[0], 16) & ~(PAGE - 1)

try:
    levels = 5 if prog["__pgtable_l5_enabled"].value_() else 4
except KeyError:
    levels = 4
if levels == 5:
    PHYS_MASK = (1 << 52) - 1
SHIFTS = [48, 39, 30, 21, 12][5 - levels:]
USER_TOP = 1 << (SHIFTS[0] + 8)    # the lower half: PGD entries 0..255


def read_table(pa):
    t = array("Q")
    t.frombytes(prog.read(pa, PAGE, True))
    return t


def walk(pgd_pa, ranges):
    """(virtual address, physical address) of every leaf mapping `target`, and the number
    of present pages seen, in the VMA ranges (sorted [start, end))."""
    hits = []
    seen = 0

    starts = [s for s, _ in ranges]
    ends = [e for _, e in ranges]

    def overlaps(lo, hi):
        i = bisect_right(ends, lo)          # first VMA ending above lo
        return i < len(starts) and starts[i] < hi

    def visit(pa, base, depth):
        nonlocal seen
        shift = SHIFTS[depth]
        span = 1 << shift
        last = depth == len(SHIFTS) - 1
        table = read_table(pa)
        for i, e in enumerate(table):
            if not e:
                continue
            va = base + i * span
            if depth == 0 and va >= USER_TOP:
                break
            # a present PTE lies inside a VMA: the check is for the levels above
            if not last and not overlaps(va, va + span):
                continue
            if not e & (_P | _PROTNONE):
                continue        # swap entry (or a table page absent)
            leaf = last or (depth >= len(SHIFTS) - 3 and e & _PSE)
            if leaf:
                size = span
                lpa = e & PHYS_MASK & ~(size - 1)
                seen += size // PAGE
                if lpa <= target < lpa + size:
                    hits.append((va + (target - lpa), target))
            else:
                visit(e & PHYS_MASK & ~(PAGE - 1), va, depth + 1)

    visit(pgd_pa, 0, 0)
    return hits, seen


def main():
    by_mm = {}
    for task in for_each_task(prog):
        mm = task.mm.value_()
        if mm:
            by_mm.setdefault(mm, []).append(task)
    matched = 0
    pages = 0
    for mm_addr, tasks in by_mm.items():
        mm = tasks[0].mm
        ranges = sorted((v.vm_start.value_(), v.vm_end.value_()) for v in for_each_vma(mm))
        hits, seen = walk(virt_to_phys(prog, mm.pgd).value_(), ranges)
        pages += seen
        if not hits:
            continue
        for t in sorted(tasks, key=lambda t: t.pid.value_()):
            matched += 1
            if quiet:
                continue
            print(f"PID: {t.pid.value_():<7} TASK: {t.value_():x}  CPU: -   "
                  f"COMMAND: \"{t.comm.string_().decode()}\"")
            print("      VIRTUAL     PHYSICAL")
            for va, pa in hits:
                print(f"  {va:x}  {pa:x}")
            print()
    print(f"drgn_rmap: {matched} tasks map {target:x}; {pages} present pages walked in "
          f"{len(by_mm)} mms", file=sys.stderr)


main()
