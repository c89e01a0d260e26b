"""Questions for crash's `vm` / `foreach`, derived from one dump's facts and a seed.

Every family draws its arguments from the dump: pids, task addresses, VMAs, mms (also
paired with the wrong task), user addresses (mapped, not mapped, PROT_NONE, swapped, page
aligned or not), physical pages (also ones several tasks share), file names (whole,
basename, fragment, no match), swap devices and offsets, vm_flags values and random 64-bit
numbers, kernel addresses, `foreach` selectors in combinations, and malformed forms.
The same (facts, seed, count) always gives the same list.
"""
from __future__ import annotations

import random
from collections import defaultdict

from tests.generate.facts import Facts

STATES = ("RU", "IN", "UN", "ST", "TR", "ZO", "DE", "SW", "WA", "PA", "ID", "NE")
VM_OPTS = ("", "-p", "-m", "-v", "-x -m", "-d -m", "-x -v", "-d -v")


def _hex(rng: random.Random, v: int) -> str:
    return rng.choice((f"{v:x}", f"0x{v:x}", f"{v:x}")) if v else "0"


def generate(facts: Facts, seed: int, count: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    g = _Gen(facts, rng)
    families = [f for f in dir(g) if f.startswith("q_")]
    weights = {f: getattr(g, f).__doc__.count("*") or 1 for f in families}
    out: list[tuple[str, str]] = []
    seen = set()
    tries = 0
    while len(out) < count and tries < count * 20:
        tries += 1
        fam = rng.choices(families, [weights[f] for f in families])[0]
        cmd = getattr(g, fam)()
        if cmd is None or cmd in seen:
            continue
        seen.add(cmd)
        out.append((fam[2:], cmd))
    return out


class _Gen:
    def __init__(self, facts: Facts, rng: random.Random):
        self.f, self.r = facts, rng
        self.tasks = facts.tasks
        self.users = facts.user_tasks
        self.kthreads = [t for t in self.tasks if not t.mm]
        self.vmas = [(t, v) for t in self.users for v in t.vmas]
        pages = defaultdict(list)
        self.mapped, self.unmapped, self.swapped, self.filed = [], [], [], []
        for t, v, p in facts.pages():
            if p.phys is not None:
                pages[p.phys].append(t)
                self.mapped.append((t, v, p))
            elif p.swap:
                self.swapped.append((t, v, p))
            elif p.file:
                self.filed.append((t, v, p))
            else:
                self.unmapped.append((t, v, p))
        self.phys = list(pages)
        self.shared = [pa for pa, ts in pages.items() if len({x.mm for x in ts}) > 1]
        self.paths = sorted({v.path for _, v in self.vmas if v.path})
        self.flags = sorted({v.flags for _, v in self.vmas})
        self.protnone = [(t, v) for t, v in self.vmas if not v.flags & 0x7]

    # helpers -------------------------------------------------------------------------
    def pick(self, seq):
        return self.r.choice(seq) if seq else None

    def who(self, t) -> str:
        """A task named as crash accepts it: pid (decimal or hex) or task address."""
        r = self.r.random()
        if r < 0.7 or not t:
            return str(t.pid)
        return f"{t.task:x}"

    def who_one(self, t) -> str:
        """who(), but naming one task where PID 0 names each CPU's idle task. For vm -M:
        crash gives the mm to every task with no mm that the argument names and takes it
        back from the last one only (memory.c: vm_cleanup keeps one task_context), so the
        other idle tasks would keep it for the rest of the session and answer later
        questions with it."""
        name = self.who(t)
        return f"{t.task:x}" if t.pid == 0 else name

    def any_task(self):
        return self.pick(self.tasks)

    # families (the docstring's stars weight how often each is drawn) -----------------
    def q_pid(self):
        """** vm PID|TASK [opts]"""
        t = self.pick(self.tasks)
        opt = self.pick([o for o in VM_OPTS if o != "-p" or t.mm and len(t.vmas) < 200])
        return f"vm {opt} {self.who(t)}".replace("  ", " ")

    def q_several_tasks(self):
        """* vm with several task arguments, some invalid"""
        ts = self.r.sample(self.tasks, min(len(self.tasks), self.r.randint(2, 3)))
        args = [self.who(t) for t in ts]
        if self.r.random() < 0.3:
            args.insert(self.r.randrange(len(args) + 1), self.pick(["99999", "abc", "0x1"]))
        return "vm " + " ".join(args)

    def q_vma(self):
        """** vm -P VMA [task]"""
        t, v = self.pick(self.vmas)
        r = self.r.random()
        if r < 0.5:
            return f"vm -P {_hex(self.r, v.addr)} {self.who(t)}"
        if r < 0.7:
            other = self.pick(self.tasks)
            return f"vm -P {v.addr:x} {self.who(other)}"
        if r < 0.85:
            return f"vm -P {v.addr:x}"
        return f"vm -P {v.addr + self.r.choice((8, 0x40, -8)) & (1 << 64) - 1:x} {self.who(t)}"

    def q_mm(self):
        """** vm -M MM task (matching, another task's, a kernel thread's, garbage)"""
        t = self.pick(self.users)
        other = self.pick(self.tasks)
        mm = self.r.choice((t.mm, t.mm, t.pgd, t.task, 0x1000, t.mm + 0x40))
        opt = self.r.choice(("", "", "-p ")) if other.mm == 0 or len(other.vmas) < 100 else ""
        return f"vm {opt}-M {_hex(self.r, mm)} {self.who_one(self.r.choice((t, other)))}"

    def q_vaddr(self):
        """*** vm -R user-address task: mapped, unmapped, PROT_NONE, swapped, file"""
        src = self.r.choice([s for s in (self.mapped, self.unmapped, self.swapped, self.filed)
                             if s])
        t, v, p = self.pick(src)
        va = p.vaddr + (0 if self.r.random() < 0.5 else self.r.randrange(1, 4096))
        if self.protnone and self.r.random() < 0.15:
            t, v = self.pick(self.protnone)
            va = v.start + self.r.randrange(0, max(v.end - v.start, 1))
        return f"vm -R {_hex(self.r, va)} {self.who(t)}"

    def q_vaddr_gap(self):
        """* vm -R address between or outside VMAs"""
        t = self.pick(self.users)
        vs = t.vmas
        i = self.r.randrange(len(vs))
        va = vs[i].end + self.r.randrange(0, 0x10000) if i + 1 < len(vs) else \
            self.r.choice((0, 0x1000, vs[-1].end + 0x1000, 1 << 47, (1 << 47) - 1))
        return f"vm -R {_hex(self.r, va)} {self.who(t)}"

    def q_phys(self):
        """*** vm -R PHYS task / foreach vm -R PHYS (shared pages too)"""
        pa = self.pick(self.shared) if self.shared and self.r.random() < 0.4 else self.pick(self.phys)
        if pa is None:
            return None
        pa += 0 if self.r.random() < 0.6 else self.r.randrange(1, 4096)
        if self.r.random() < 0.5:
            return f"foreach vm -R {_hex(self.r, pa)}"
        return f"vm -R {_hex(self.r, pa)} {self.who(self.pick(self.users))}"

    def q_file(self):
        """** vm -R / foreach vm -R with a file name: whole, basename, fragment, no match"""
        path = self.pick(self.paths)
        if path is None:
            return None
        base = path.rsplit("/", 1)[-1]
        ref = self.r.choice((path, base, base[:max(1, len(base) // 2)],
                             path[1:max(2, len(path) // 2)], "nosuchfile", "/"))
        if self.r.random() < 0.5:
            return f"foreach vm -R {ref}"
        return f"vm -R {ref} {self.who(self.pick(self.users))}"

    def q_swap(self):
        """** swap devices and offsets"""
        if not self.swapped:
            return None
        t, v, p = self.pick(self.swapped)
        dev, off = p.swap
        ref = self.r.choice((dev, dev.rsplit("/", 1)[-1], str(off), f"{off:x}", f"0x{off:x}"))
        if self.r.random() < 0.4:
            return f"foreach vm -R {ref}"
        return f"vm -R {ref} {self.who(t)}"

    def q_flags(self):
        """** vm -f VALUE: seen flags, bits, random 64-bit"""
        r = self.r.random()
        if r < 0.4 and self.flags:
            v = self.pick(self.flags)
        elif r < 0.7:
            v = 1 << self.r.randrange(64)
        else:
            v = self.r.getrandbits(self.r.choice((8, 16, 32, 64)))
        return f"vm -f {_hex(self.r, v)}"

    def q_vmflags_ref(self):
        """* vm -R with a VMA flags value or VMA address"""
        t, v = self.pick(self.vmas)
        ref = self.r.choice((f"{v.flags:x}", f"{v.addr:x}", f"{v.start:x}", f"{v.end:x}"))
        if self.r.random() < 0.3:
            return f"foreach vm -R {ref}"
        return f"vm -R {ref} {self.who(t)}"

    def q_kaddr(self):
        """* kernel addresses as references, mms and VMAs"""
        t = self.pick(self.tasks)
        u = self.pick(self.users)
        ref = self.r.choice((t.task, u.mm, u.pgd, 0xffffffff81000000, (1 << 64) - 1))
        form = self.r.choice(("vm -R {r} {t}", "foreach vm -R {r}", "vm -P {r} {t}",
                              "vm -M {r} {t}"))
        who = self.who_one if "-M" in form else self.who
        return form.format(r=_hex(self.r, ref), t=who(self.r.choice((t, u))))

    def q_foreach(self):
        """**** foreach SELECTORS vm [opts]"""
        sel = []
        for _ in range(self.r.choice((1, 1, 1, 2, 2, 3))):
            kind = self.r.random()
            t = self.pick(self.tasks)
            if kind < 0.2:
                sel.append(str(t.pid))
            elif kind < 0.3:
                sel.append(f"{t.task:x}")
            elif kind < 0.45:
                sel.append(t.comm)
            elif kind < 0.55:
                sel.append("'" + self.r.choice((t.comm[:3] + ".*", "wl_.*", "^k.*", ".*d$"))
                           + "'")
            elif kind < 0.75:
                sel.append(self.r.choice(("user", "kernel", "gleader", "active")))
            else:
                sel.append(self.r.choice(STATES))
        opt = self.r.choice(("", "", "-R 0", "-m", "-x -v", "-f 0", "-R /bin"))
        if opt == "" and self.r.random() < 0.2:
            opt = "-p" if all(s[0].isdigit() for s in sel) else ""
        return f"foreach {' '.join(sel)} vm {opt}".rstrip()

    def q_foreach_phys(self):
        """* foreach SELECTOR vm -R PHYS"""
        pa = self.pick(self.shared or self.phys)
        sel = self.r.choice(("user", "gleader", self.pick(self.users).comm, self.pick(STATES),
                             str(self.pick(self.users).pid)))
        return f"foreach {sel} vm -R {pa:x}"

    def q_malformed(self):
        """*** malformed: bad numbers, unknown options, exclusive options, missing/extra args"""
        t = self.pick(self.users)
        forms = [
            "vm -z", "vm -p -v", "vm -m -v {t}", "vm -x -d", "vm -x -d -m {t}", "vm -R",
            "vm -f", "vm -P", "vm -M", "vm -P zz {t}", "vm -f zz", "vm -f 0x", "vm -f -1",
            "vm -f 0x1ffffffffffffffff", "vm -M 0 {t}", "vm -M zz {t}", "vm 99999",
            "vm abc", "vm -p 99999", "vm {t} 99999", "vm -R 1 -R 2 {t}", "vm -P 0 {t}",
            "vm -f 3 -p", "vm -p -f 3", "vm -- {t}", "vm -R '' {t}", "vm -v -p {t}",
            "foreach", "foreach vm -z", "foreach {t}", "foreach 99999 vm", "foreach nosuch vm",
            "foreach user kernel vm", "foreach vm vm", "foreach -R vm", "foreach vm -M 0",
            "foreach vm -P 0", "vm -d", "vm -x", "vm -f 0X10", "vm -f 10x",
            "foreach '[' vm", "vm -R {t} {t}", "vm -P {v}", "vm -P {v} 99999",
        ]
        v = self.pick(t.vmas)
        return self.pick(forms).format(t=t.pid, v=f"{v.addr:x}")

    # crash's ps ---------------------------------------------------------------------
    PS_OPTS = ("", "", "-k", "-u", "-G", "-s", "-us", "-ks", "-y NORMAL", "-y fifo,RR",
               "-y 0x0", "-y IDLE", "-H", "-A", "-p", "-c", "-t", "-kt", "-ut", "-l",
               "-m", "-g", "-r", "-Gs", "-u -H", "-s -A")

    def ps_word(self):
        """A task as ps takes it: pid, task address, command name, 'regex', \\name."""
        t = self.pick(self.tasks)
        r = self.r.random()
        if r < 0.45:
            return self.who(t)
        if r < 0.65:
            return t.comm
        if r < 0.8:
            return "'" + self.r.choice((f"^{t.comm[:3]}", t.comm[:2] + ".*", "wl_", "k.*d$",
                                        "[0-9]")) + "'"
        if r < 0.9:
            return self.r.choice(("99999", "0x0", "\\1", "nosuchcommand", "1x", "ffff"))
        return "\\" + t.comm

    def q_ps(self):
        """*** ps [option] [pid|task|command|'regex']..."""
        opt = self.pick(self.PS_OPTS)
        words = [self.ps_word() for _ in range(self.r.choice((0, 0, 1, 1, 1, 2, 3)))]
        return " ".join(["ps", opt] + words).replace("  ", " ").strip()

    def q_ps_lastrun(self):
        """* ps -l / -m, with -C cpus"""
        cpus = max(t.cpu for t in self.tasks) + 1
        spec = self.pick(("0", "a", "all", f"0-{cpus - 1}", ",".join(map(str, range(cpus))),
                          str(cpus), "x", "1-0"))
        opt = self.pick(("-l", "-m"))
        if self.r.random() < 0.6:
            return f"ps {opt} -C {spec}"
        return f"ps {opt} -C{spec} {self.ps_word()}"

    def q_ps_rules(self):
        """* ps option conflicts and malformed forms"""
        return self.pick((
            "ps -p -c", "ps -t -a", "ps -u -k", "ps -k -u 1", "ps -S", "ps -S 1", "ps -k -S",
            "ps -G -l", "ps -G -m", "ps -C 0", "ps -C 0 1", "ps -y FOO", "ps -y", "ps -Z",
            "ps -A -S", "ps -g -r", "ps -H -t 1", "ps -y normal,fifo -k", "ps -I", "ps -Y",
            f"ps -u -t {self.pick(self.kthreads).pid if self.kthreads else 2}",
            f"ps -G {self.who(self.pick(self.tasks))} {self.who(self.pick(self.tasks))}",
            "ps 1 1", "ps -r 0", "ps -g 0", "ps -c 0", "ps -p 0"))

    def q_ps_args(self):
        """* ps -a: argument and environment pages (what the dump variant kept of them)"""
        if self.r.random() < 0.2:
            return "ps -a " + " ".join(self.ps_word() for _ in range(self.r.randint(0, 2)))
        return f"ps -a {self.ps_word()}"

    def q_sys(self):
        """crash's sys: taint, bad options (plain `sys` names the files as each tool was
        given them: tests/test_sys.py and the matrix ingest under crash's names)"""
        return self.pick(("sys -t", "sys -x", "sys -t -t", "sys -t -x"))
