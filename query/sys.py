"""`vmdex sys` (and `sys -t`): crash's `sys`, kernel.c display_sys_stats / cmd_sys, printed
from the facts ingest stored in dump_info (indexer.walk.system). No dump is opened.

A fact the dump could not give is printed as `?` and named, with the reason, in one line on
stderr (exit status 1). `--format json|csv` prints the same facts as keys and values.
"""
from __future__ import annotations

import time

from vmdex.indexer.errors import VmdexError
from vmdex.query.words import getopt

OPTSTRING = "ctip:"
USAGE = ("Usage:\n"
         "  sys [-c [name|number]] [-t] [-i] config\n"
         "Enter \"help sys\" for details.\n")
FSHIFT = 11
FIXED_1 = 1 << FSHIFT
GB, MB, KB = 1 << 30, 1 << 20, 1 << 10


def read_facts(idx) -> dict[str, str]:
    rows = idx.c.all("SELECT key, value FROM dump_info WHERE dump_id = ?", (idx.id,))
    if not rows:
        raise VmdexError(f"dump {idx.name}: no sys facts in the index (ingested by a vmdex "
                         "without sys): ingest it again")
    return dict(rows)


class Facts:
    """dump_info of one dump; `get` notes what is unknown, for the one stderr line."""

    def __init__(self, facts: dict[str, str]):
        self.f = facts
        self.missing: list[str] = []

    def get(self, key: str, label: str) -> str | None:
        v = self.f.get(key)
        if v is None or v == "?":
            why = self.f.get(f"{key}.why") or "not in the index"
            self.missing.append(f"{label} ({why})")
            return None
        return v


def uptime_ticks(jiffies: int, hz: int, symbol: str) -> int:
    """crash's get_uptime: jiffies_64 less INITIAL_JIFFIES (-300 s of ticks, as 32 bits);
    a value past 32 bits is taken as wrapped once. Plain `jiffies` as it is."""
    j = jiffies
    if symbol == "jiffies_64":
        wrapped = j & 0xFFFFFFFF00000000
        if wrapped:
            j = ((wrapped - 0x100000000) | (j & 0xFFFFFFFF)) + 300 * hz
        else:
            j = (j - ((-300 * hz) & 0xFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF
    return j


def convert_time(count: int, hz: int) -> str:
    """crash's convert_time: ticks as [N days, ]hh:mm:ss."""
    total = count // hz
    days, total = divmod(total, 86400)
    h, total = divmod(total, 3600)
    m, s = divmod(total, 60)
    return (f"{days} days, " if days else "") + f"{h:02}:{m:02}:{s:02}"


def uptime(jiffies: int, hz: int, symbol: str) -> str:
    return convert_time(uptime_ticks(jiffies, hz, symbol), hz)


def load_average(avenrun: str) -> str:
    parts = []
    for v in (int(x) for x in avenrun.split()):
        a = (v + FIXED_1 // 200) & 0xFFFFFFFF       # crash adds into an int
        a = a - (1 << 32) if a >> 31 else a
        parts.append(f"{a >> FSHIFT}.{((a & (FIXED_1 - 1)) * 100) >> FSHIFT:02}")
    return ", ".join(parts)


def memory_size(total: int, page: int) -> str:
    """crash's get_memory_size: within 64 MB below a GB boundary rounds up to it, then
    pages_to_size (one decimal, `.0` dropped)."""
    next_gig = -(-total // GB) * GB
    if next_gig and next_gig - total <= 64 * MB:
        total = next_gig
    size = (total // page) * page
    if size == 0:
        return "0"
    if size >= GB:
        s = "%.1f GB" % (size / GB)
    elif size >= MB:
        s = "%.1f MB" % (size / MB)
    else:
        return f"{size // KB} KB"
    return s.replace(".0 ", " ")


def ctime_tz(sec: int) -> str:
    """crash's ctime_tz: strftime("%a %b %e %T %Z %Y") in the local time zone."""
    return time.strftime("%a %b %e %T %Z %Y", time.localtime(sec))


def sys_lines(facts: Facts) -> list[tuple[str, str]]:
    """(label, value) of each line display_sys_stats prints, values as crash words them."""
    g = facts.get
    q = "?"
    kernel = g("kernel", "KERNEL") or q
    for key, mark in (("livepatch", "  [LIVEPATCH]"), ("transition", "  [TRANSITION]"),
                      ("tainted", "  [TAINTED]")):
        v = g(key, f"KERNEL {mark.strip()}")
        kernel += q if v is None else (mark if v not in ("0", "") else "")
    dumpfile = g("dumpfile", "DUMPFILE") or q
    if facts.f.get("dump_kind") == "diskdump":
        marks = "".join(m for key, m in (("partial", " [PARTIAL DUMP]"),
                                         ("incomplete", " [INCOMPLETE]"),
                                         ("excluded_vmemmap", " [EXCLUDED VMEMMAP]"))
                        if facts.f.get(key) == "1")
        if "\n" in dumpfile:      # a split set: each file (diskdump.c show_split_dumpfiles)
            dumpfile = ("\n" + " " * 14).join(n + marks for n in dumpfile.split("\n"))
        elif marks:
            dumpfile += " " + marks
    elif facts.f.get("partial") == "1":
        dumpfile += "  [PARTIAL DUMP]"
    present, online = g("cpus_present", "CPUS"), g("cpus_online", "CPUS [OFFLINE]")
    cpus = present or q
    if present and online and int(present) > int(online):
        cpus += f" [OFFLINE: {int(present) - int(online)}]"
    sec = g("xtime_sec", "DATE")
    jiffies, hz = g("jiffies", "UPTIME"), g("hz", "UPTIME (HZ)")
    avenrun = g("avenrun", "LOAD AVERAGE")
    mhz = g("mhz", "MACHINE (Mhz)")
    machine = (g("machine", "MACHINE") or q) + "  " + (
        q if mhz is None else f"({mhz} Mhz)" if int(mhz) else "(unknown Mhz)")
    memory = g("memory", "MEMORY")
    panic = g("panic", "PANIC")
    panic_text = q if panic is None else f"\"{panic}\"" + (
        " (check log for details)" if "Oops: " in panic else "")
    return [
        ("KERNEL", kernel), ("DUMPFILES" if "\n" in dumpfile else "DUMPFILE", dumpfile),
        ("CPUS", cpus),
        ("DATE", q if sec is None else ctime_tz(int(sec))),
        ("UPTIME", q if None in (jiffies, hz) else
         uptime(int(jiffies), int(hz), facts.f.get("jiffies_symbol", "jiffies_64"))),
        ("LOAD AVERAGE", q if avenrun is None else load_average(avenrun)),
        ("TASKS", g("tasks", "TASKS") or q),
        ("NODENAME", g("nodename", "NODENAME") or q),
        ("RELEASE", g("release", "RELEASE") or q),
        ("VERSION", g("version", "VERSION") or q),
        ("MACHINE", machine),
        ("MEMORY", q if memory is None else memory_size(int(memory),
                                                        int(facts.f.get("page_size", 4096)))),
        ("PANIC", panic_text),
    ]


def taints_line(facts: Facts) -> str:
    """`sys -t` (kernel.c show_kernel_taints, verbose)."""
    sym = facts.f.get("taint_symbol", "")
    value = facts.get("tainted", "TAINTED_MASK")
    if sym == "tainted":
        return f"TAINTED: {int(value):x}\n" if value is not None else "TAINTED: ?\n"
    letters = facts.get("taint_letters", "TAINTED_MASK letters")
    return (f"TAINTED_MASK: {'?' if value is None else format(int(value), 'x')}  "
            f"{'?' if letters is None else letters}\n")


def _emit(out, fmt: str, lines: list[tuple[str, str]], text: str) -> None:
    if fmt == "text":
        out.write(text)
        return
    from vmdex.query.render.tables import WRITERS

    class _W:
        def write(self, s):
            out.write(s)
    WRITERS[fmt](["key", "value"], [(k.lower().replace(" ", "_"), v) for k, v in lines], _W())


def run_sys(open_index, argv: list[str], out, fmt: str = "text") -> int:
    events, words = getopt("sys", argv, OPTSTRING)
    errs, count_c = 0, False
    for ev in events:
        if ev.opt == "?":
            out.err(ev.complaint)
            errs += 1
        elif ev.opt == "p":
            if ev.arg == "anic":
                out.err("sys: -panic panics a live system: vmdex reads an index, not one\n")
                return 1
            errs += 1
        elif ev.opt == "c":
            count_c = True
        elif ev.opt in "ti" and not errs:
            if ev.opt == "i":
                out.err("vmdex: sys -i (DMI strings) is a form vmdex does not answer\n")
                return 1
            facts = Facts(read_facts(open_index()))
            text = taints_line(facts)
            _emit(out, fmt, [("TAINTED_MASK" if "MASK" in text else "TAINTED",
                              text.split(":", 1)[1].strip())], text)
            return _report(out, facts)
    if errs:
        out.write(USAGE)
        return 1
    if words and not count_c and any(w != "config" for w in words):
        out.write(USAGE)
        return 1
    if count_c or words:
        form = "sys -c" if count_c else "sys config"
        out.err(f"vmdex: {form} is a form vmdex does not answer\n")
        return 1
    facts = Facts(read_facts(open_index()))
    lines = sys_lines(facts)
    _emit(out, fmt, lines, "".join(f"{label:>12}: {value}\n" for label, value in lines))
    return _report(out, facts)


def _report(out, facts: Facts) -> int:
    if facts.missing:
        out.err(f"vmdex: sys: unknown: {'; '.join(facts.missing)}\n")
        return 1
    return 0
