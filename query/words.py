"""crash's argument words for `vm`: glibc getopt (permuting), crash's number parsers.

Options are handled one at a time in command-line order, as crash's getopt loop does, so
side effects (an immediate `-f`, a fatal `-x -d`) happen exactly where crash has them.
"""
from __future__ import annotations

import string
from dataclasses import dataclass, field

VM_OPTSTRING = "f:pmvR:P:xdM:"
_HEX = set(string.hexdigits)


class Fatal(Exception):
    """crash's error(FATAL, ...): the message, then the command stops (no usage text)."""


@dataclass
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
    return bool(s) and all(ch in string.digits for ch in s)


def is_hexadecimal(s: str) -> bool:
    """crash's hexadecimal(): hex digits, with an optional 0x and 'x' tolerated anywhere."""
    body = s[2:] if s[:2].lower() == "0x" else s
    return bool(body) and all(ch in _HEX or ch in "xX" for ch in body)


def is_number(s: str) -> bool:
    return is_decimal(s) or is_hexadecimal(s)


def htol(s: str, cmd: str = "vm") -> int:
    """crash's htol(): hex with optional 0x; anything else is fatal `invalid input`."""
    body = s[2:] if s[:2].lower() == "0x" else s
    if not body or len(body) > 16 or any(ch not in _HEX for ch in body):
        raise Fatal(f'{cmd}: invalid input: "{s}"\n')
    return int(body, 16)


@dataclass
class VmArgs:
    mode: set[str] = field(default_factory=set)   # subset of {"p", "m", "v", "P"}
    ref: str | None = None
    single_vma: int | None = None
    mm: int | None = None
    mm_arg: str | None = None
    radix: int | None = None
    flags_value: int | None = None                # -f: print and stop
    words: list[str] = field(default_factory=list)
    usage: bool = False                          # argerrs: print the usage text
    messages: list[str] = field(default_factory=list)   # stdout messages before the usage
    complaints: list[str] = field(default_factory=list)  # stderr (glibc getopt)


def parse_vm(args: list[str], page_offset=None) -> VmArgs:
    """Parse `vm` words exactly as crash's cmd_vm getopt loop does; may raise Fatal.

    `page_offset()` gives the dump's direct-map base (crash's PAGE_OFFSET), asked for only
    when `-M` needs it: x86_64 IS_KVADDR is `addr >= PAGE_OFFSET`, and PAGE_OFFSET differs
    between dumps (KASLR randomises it; 5-level paging puts it below 0xff20000000000000)."""
    events, words = getopt("vm", args, VM_OPTSTRING)
    v = VmArgs(words=words)
    for ev in events:
        c = ev.opt
        if c == "?":
            v.complaints.append(ev.complaint)
            v.usage = True
        elif c == "f":
            if v.mode:
                v.usage = True
            else:
                v.flags_value = htol(ev.arg)
                return v
        elif c in "pmv":
            if v.mode:
                v.usage = True
            else:
                v.mode.add(c)
        elif c == "R":
            if v.ref is not None:
                v.messages.append("vm: only one -R option allowed\n")
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
            v.mm_arg = ev.arg
            if page_offset is not None and v.mm < page_offset():  # !IS_KVADDR(mm)
                raise Fatal(f"vm: invalid mm_struct address: {ev.arg}\n")
    return v
