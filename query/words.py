"""crash's argument words for `vm`: crash's line splitting, glibc getopt (permuting),
crash's number parsers.

Options are handled one at a time in command-line order, as crash's getopt loop does, so
side effects (an immediate `-f`, a fatal `-x -d`) happen exactly where crash has them.
"""
from __future__ import annotations

import string

from vmdex.query.record import factory, record

VM_OPTSTRING = "f:pmvR:P:xdM:"
_HEX = set(string.hexdigits)


class Fatal(Exception):
    """crash's error(FATAL, ...): the message, then the command stops (no usage text)."""


def crash_words(line: str) -> list[str]:
    """The words crash's parse_line (tools.c) makes of a command line: split at blanks,
    a "double-quoted" stretch is one word without its quotes; single quotes are ordinary
    characters (foreach's 'regex' keeps them)."""
    words, i, n = [], 0, len(line)
    while i < n:
        if line[i] in " \t":
            i += 1
            continue
        if line[i] == '"':
            j = line.find('"', i + 1)
            j = n if j < 0 else j
            words.append(line[i + 1:j])
            i = j + 1
            continue
        j = i
        while j < n and line[j] not in " \t":
            j += 1
        words.append(line[i:j])
        i = j
    return words


@record
class GetoptEvent:
    opt: str              # the option letter, or "?" for an error
    arg: str | None = None
    complaint: str | None = None  # glibc's message, printed on stderr


def getopt(cmd: str, args: list[str], optstring: str) -> tuple[list[GetoptEvent], list[str]]:
    """GNU getopt with argument permutation: (events in order, non-option words)."""
    takes = {c: optstring[i + 1:i + 2] == ":" for i, c in enumerate(optstring) if c != ":"}
    events, words = [], []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            words += args[i + 1:]
            break
        if len(a) > 1 and a[0] == "-":
            j = 1
            while j < len(a):
                c = a[j]
                if c not in takes:
                    events.append(GetoptEvent("?", complaint=f"{cmd}: invalid option -- '{c}'\n"))
                    j += 1
                    continue
                if not takes[c]:
                    events.append(GetoptEvent(c))
                    j += 1
                    continue
                if j + 1 < len(a):
                    events.append(GetoptEvent(c, a[j + 1:]))
                elif i + 1 < len(args):
                    i += 1
                    events.append(GetoptEvent(c, args[i]))
                else:
                    events.append(GetoptEvent(
                        "?", complaint=f"{cmd}: option requires an argument -- '{c}'\n"))
                break
        else:
            words.append(a)
        i += 1
    return events, words


def is_decimal(s: str) -> bool:
    """crash's decimal(s, 0): decimal digits only, at least one (tools.c)."""
    return bool(s) and all(ch in string.digits for ch in s)


def is_hexadecimal(s: str) -> bool:
    """crash's hexadecimal(s, 0) (tools.c): hex digits and 'x'/'X' anywhere, at least one
    digit. So "0x" (its 0 is a digit) and "1x2" are numbers; "x" and "0xzz" are not."""
    return any(ch in _HEX for ch in s) and all(ch in _HEX or ch in "xX" for ch in s)


def is_number(s: str) -> bool:
    """crash's IS_A_NUMBER()."""
    return is_decimal(s) or is_hexadecimal(s)


MAX_HEXADDR_STRLEN = 16   # x86_64; also LONG_LONG_PRLEN, htoll's limit


def htol(s: str, cmd: str = "vm") -> int:
    """crash's htol()/htoll() with FAULT_ON_ERROR (tools.c): one leading 0x/0X dropped;
    more than 16 characters left is `input string too large`; 'x', 'X' and 'h' are skipped
    wherever they are; any other non-hex character is `invalid input`. Both messages quote
    the string without its 0x. So "0x" is 0, "0x0x10" is 0x10, "1h" is 1."""
    body = s[2:] if s[:2] in ("0x", "0X") else s
    if len(body) > MAX_HEXADDR_STRLEN:
        raise Fatal(f'{cmd}: input string too large: "{body}" ({len(body)} vs '
                    f'{MAX_HEXADDR_STRLEN})\n')
    n = 0
    for ch in body:
        if ch in _HEX:
            n = (n * 16 + int(ch, 16)) & ((1 << 64) - 1)
        elif ch not in "xXh":
            raise Fatal(f'{cmd}: invalid input: "{body}"\n')
    return n


@record
class VmArgs:
    mode: set[str] = factory(set)   # subset of {"p", "m", "v", "P"}
    ref: str | None = None
    single_vma: int | None = None
    mm: int | None = None
    radix: int | None = None
    flags_value: int | None = None                # -f: print and stop
    words: list[str] = factory(list)
    usage: bool = False                          # argerrs: print the usage text
    # what the option loop printed, in its order: ("err", glibc getopt's complaint) or
    # ("out", crash's INFO message)
    notes: list[tuple[str, str]] = factory(list)


def parse_vm(args: list[str], page_offset=None, untagged=None) -> VmArgs:
    """Parse `vm` words exactly as crash's cmd_vm getopt loop does (memory.c cmd_vm).

    May raise Fatal (a bad number for -f/-P/-M, -x with -d, -M not a kernel address): the
    exception then carries `notes`, what the loop printed before it stopped.

    `page_offset()` gives the dump's direct-map base (crash's PAGE_OFFSET), asked for only
    when `-M` needs it: crash's IS_KVADDR is `addr >= PAGE_OFFSET` on x86_64 and `addr >=
    kvbase` on arm64 (the ingest stores either as dumps.page_offset), and it differs
    between dumps (x86_64 KASLR randomises it; 5-level paging puts it below
    0xff20000000000000; arm64 has -(1 << VA_BITS)). `untagged(addr)`, if given, is the
    address crash compares (arm64_is_kvaddr resets an MTE tag first)."""
    events, words = getopt("vm", args, VM_OPTSTRING)
    v = VmArgs(words=words)
    try:
        _vm_options(v, events, page_offset, untagged)
    except Fatal as exc:
        exc.notes = v.notes
        raise
    return v


def _vm_options(v: VmArgs, events: list[GetoptEvent], page_offset, untagged=None) -> None:
    for ev in events:
        c = ev.opt
        if c == "?":
            v.notes.append(("err", ev.complaint))
            v.usage = True
        elif c == "f":
            if v.mode:
                v.usage = True
            else:
                v.flags_value = htol(ev.arg)
                return
        elif c in "pmv":
            if v.mode:
                v.usage = True
            else:
                v.mode.add(c)
        elif c == "R":
            if v.ref is not None:
                v.notes.append(("out", "vm: only one -R option allowed\n"))
                v.usage = True
            elif v.mode and v.mode != {"p"}:
                v.usage = True
            else:
                v.ref = ev.arg
                v.mode.add("p")
        elif c == "P":
            if v.mode:
                v.usage = True
            else:
                v.mode.add("P")
                v.single_vma = htol(ev.arg)
        elif c == "x":
            if v.radix == 10:
                raise Fatal("vm: -d and -x are mutually exclusive\n")
            v.radix = 16
        elif c == "d":
            if v.radix == 16:
                raise Fatal("vm: -d and -x are mutually exclusive\n")
            v.radix = 10
        elif c == "M":
            v.mm = htol(ev.arg)
            kv = untagged(v.mm) if untagged is not None else v.mm
            if page_offset is not None and kv < page_offset():  # !IS_KVADDR(mm)
                raise Fatal(f"vm: invalid mm_struct address: {ev.arg}\n")
