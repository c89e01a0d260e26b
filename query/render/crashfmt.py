"""crash's text primitives for `vm` on 64-bit machines (x86_64, arm64): mkstring padding
and the fixed line layouts.

Widths are crash's for a 64-bit build: VADDR_PRLEN 16, UVADDR_PRLEN 10, one-space MINSPACE.
Nothing is ever truncated: an overlong value pushes the rest of the line right.
"""
from __future__ import annotations

VADDR_PRLEN = 16
UVADDR_PRLEN = 10


def mk(s: str, width: int, center: bool = False, rjust: bool = False) -> str:
    """crash's mkstring(): centring puts an odd extra space right (LJUST) or left (RJUST)."""
    extra = width - len(s)
    if extra <= 0:
        return s
    if center:
        left = extra // 2 + (1 if rjust and extra % 2 else 0)
        return " " * left + s + " " * (extra - left)
    return " " * extra + s if rjust else s + " " * extra


def task_header(pid: int, task: int, cpu: int | str, comm: str) -> str:
    return f'PID: {pid:<7}  TASK: {task:<16x}  CPU: {str(cpu):<3}  COMMAND: "{comm}"\n'


MM_HEADER = (mk("MM", 16, center=True) + "  " + mk("PGD", 16, center=True) + "  "
             + mk("RSS", 6, center=True) + "  " + mk("TOTAL_VM", 8, center=True) + "\n")


def mm_line(mm: int, pgd: int, rss_kb: int, total_vm_kb: int) -> str:
    return (mk(f"{mm:x}", 16, center=True) + "  " + mk(f"{pgd:x}", 16, center=True) + "  "
            + mk(f"{rss_kb}k", 6, center=True) + "  " + mk(f"{total_vm_kb}k", 8, center=True)
            + "\n")


VMA_HEADER = (mk("VMA", 16, center=True) + " " + mk("START", UVADDR_PRLEN, center=True, rjust=True)
              + " " + mk("END", UVADDR_PRLEN, center=True, rjust=True) + "  FLAGS FILE\n")


def vma_line(vma: int, start: int, end: int, flags: int, path: str | None) -> str:
    return (mk(f"{vma:x}", 16, center=True) + " " + mk(f"{start:x}", UVADDR_PRLEN, rjust=True)
            + " " + mk(f"{end:x}", UVADDR_PRLEN, rjust=True) + f" {flags:6x} "
            + (path or "") + "\n")


def page_header(paddr_width: int) -> str:
    return mk("VIRTUAL", UVADDR_PRLEN) + "  " + mk("PHYSICAL", paddr_width) + "\n"


USAGE = ("Usage:\n"
         "  vm [-p | -P vma | -M mm | -v | -m | -x | -d | [-R reference] [pid | task]]\n"
         "     [-f vm_flags]\n"
         "Enter \"help vm\" for details.\n")
