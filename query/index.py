"""Read one dump's rows from the index: tasks, mms, VMAs, page runs. SQL only, no dump file.

Stored 64-bit values are two's-complement int64; they are turned back into unsigned
Python ints here, so everything above this module sees kernel values as the kernel does.
"""
from __future__ import annotations

from vmdex.indexer.errors import VmdexError
from vmdex.indexer.runs import MAX_RUN_PAGES  # bounds the range scans below
from vmdex.query.conn import Conn
from vmdex.query.record import record

NAMES_SHOWN = 10      # an error lists this many dump names: a fleet index holds thousands


def some_names(names: list[str]) -> str:
    """Dump names for an error line: all of a few, the first NAMES_SHOWN of many."""
    if len(names) <= NAMES_SHOWN:
        return ", ".join(names) or "none"
    return (", ".join(names[:NAMES_SHOWN]) +
            f", ... ({len(names)} in all: `vmdex dumps` lists them)")

U64 = (1 << 64) - 1


def u(v):
    return None if v is None else v & U64


def s64(v: int) -> int:
    v &= U64
    return v - (1 << 64) if v >> 63 else v


@record
class Task:
    seq: int
    task: int
    pid: int
    ppid: int
    tgid: int
    cpu: int
    comm: str
    st: str
    flags: int
    is_idle: bool
    mm: int            # 0 when the task has no mm
    rss_pages: int
    state: int = 0     # task_struct.state / __state (unsigned)
    exit_state: int = 0


@record
class Mm:
    mm: int
    pgd: int
    total_vm: int
    mm_count: int
    raw: bytes | None = None


@record
class Vma:
    seq: int
    vma: int
    start: int
    end: int
    flags: int
    pgoff: int
    path: str | None
    raw: bytes | None = None


@record
class Run:
    va: int
    npages: int
    kind: int          # 0 present, 1 swap
    pa: int | None
    swap_type: int | None
    swap_offset: int | None


_TASK_COLS = ("seq, task, pid, ppid, tgid, cpu, comm, st, flags, is_idle, mm, rss_pages, state, "
              "exit_state")


def _task(r) -> Task:
    return Task(r[0], u(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], u(r[8]), bool(r[9]),
                u(r[10]) or 0, r[11], u(r[12]), u(r[13]))


class DumpIndex:
    def __init__(self, conn: Conn, name: str | None):
        self.c = conn
        # the whole list only when no name is given or the name is not there (a fleet
        # index holds thousands of dumps; each answer names one)
        rows = conn.all("SELECT id, name FROM dumps ORDER BY name") if name is None else []
        if name is None:
            if len(rows) == 1:
                name = rows[0][1]
            elif not rows:
                raise VmdexError("the index holds no dumps (run `vmdex ingest` first)")
            else:
                raise VmdexError("the index holds several dumps; choose one with --dump: "
                                 + some_names([r[1] for r in rows]))
        row = conn.one(
            "SELECT id, name, paddr_prlen, default_task, swap_lines, swap_info_len, "
            "has_expand_upwards, has_pmd_huge_pte, kernel_id, kaslr_offset, init_mm, page_offset, "
            "release, phys_base, ram_end, task_state_names, section_size_bits, max_physmem_bits, "
            "arch, page_size, paging_levels, ram_start FROM dumps WHERE name = ?", (name,))
        if row is None:
            rows = rows or conn.all("SELECT id, name FROM dumps ORDER BY name")
            raise VmdexError(f"no dump named {name!r} in the index (have: "
                             + some_names([r[1] for r in rows]) + ")")
        (self.id, self.name, self.paddr_prlen, default_task, self.swap_lines, self.swap_info_len,
         self.has_expand_upwards, self.has_pmd_huge_pte, self.kernel_id, kaslr, init_mm,
         page_offset, self.release, self.phys_base, ram_end, state_names, self.section_bits,
         self.physmem_bits, self.arch, self.page_size, self.paging_levels, ram_start) = row
        self.ram_start = u(ram_start) or 0
        self.task_state_names = state_names.split("\n") if state_names else None
        self.ram_end = u(ram_end) if ram_end is not None else None
        self.default_task = u(default_task)   # crash's startup context
        self.context = self.default_task      # crash's current context: `set` moves it
        self.kaslr_offset = u(kaslr)
        self.init_mm = u(init_mm) or 0
        self.page_offset = u(page_offset)   # direct-map base: crash's IS_KVADDR threshold
        self.has_expand_upwards = bool(self.has_expand_upwards)
        self.has_pmd_huge_pte = bool(self.has_pmd_huge_pte)
        self._swapdev: dict[int, str] | None = None
        self._tasks: list[Task] | None = None

    # --- tasks ---------------------------------------------------------------------
    def tasks(self) -> list[Task]:
        if self._tasks is None:
            self._tasks = [_task(r) for r in self.c.all(
                f"SELECT {_TASK_COLS} FROM tasks WHERE dump_id = ? ORDER BY seq", (self.id,))]
        return self._tasks

    def tasks_by_pid(self, pid: int) -> list[Task]:
        if not 0 <= pid < 1 << 31:  # pid_t range; anything else cannot be a pid
            return []
        return [_task(r) for r in self.c.all(
            f"SELECT {_TASK_COLS} FROM tasks WHERE dump_id = ? AND pid = ? ORDER BY seq",
            (self.id, pid))]

    def task_states(self):
        """crash's TASK_* values for this dump's kernel, from its stored task_state_array
        (indexer.walk.taskstate), None if unknown."""
        from vmdex.indexer.walk.taskstate import states_from_names

        return states_from_names(self.task_state_names, self.release)

    def state_code(self, t: Task) -> str:
        """What crash's `ps` prints in its ST column for t (task_state_string)."""
        from vmdex.indexer.walk.taskstate import state_string, task_state

        s = self.task_states()
        return t.st if s is None else state_string(s, task_state(t.state, t.exit_state))

    def is_zombie(self, t: Task) -> bool:
        """crash's IS_ZOMBIE(): task_state() & _ZOMBIE_."""
        from vmdex.indexer.walk.taskstate import task_state

        s = self.task_states()
        return t.st == "ZO" if s is None else bool(task_state(t.state, t.exit_state) & s.zombie)

    def is_active(self, addr: int) -> bool:
        r = self.c.one("SELECT is_active FROM tasks WHERE dump_id = ? AND task = ?",
                       (self.id, s64(addr)))
        return bool(r and r[0])

    def active_task(self, cpu: int) -> int | None:
        """The task running on `cpu` when the dump was taken (crash's get_active_task)."""
        r = self.c.one("SELECT task FROM tasks WHERE dump_id = ? AND is_active = 1 AND cpu = ? "
                       "ORDER BY seq", (self.id, cpu))
        return u(r[0]) if r else None

    def task_at(self, addr: int) -> Task | None:
        r = self.c.one(f"SELECT {_TASK_COLS} FROM tasks WHERE dump_id = ? AND task = ?",
                       (self.id, s64(addr)))
        return _task(r) if r else None

    # --- mm / vma ------------------------------------------------------------------
    def mm(self, addr: int, raw: bool = False) -> Mm | None:
        r = self.c.one(f"SELECT mm, pgd, total_vm, mm_count{', raw' if raw else ''} FROM mms "
                       "WHERE dump_id = ? AND mm = ?", (self.id, s64(addr)))
        if r is None:
            return None
        return Mm(u(r[0]), u(r[1]), r[2], r[3], bytes(r[4]) if raw else None)

    def vmas(self, mm: int, raw: bool = False) -> list[Vma]:
        rows = self.c.all(
            "SELECT seq, vma, vm_start, vm_end, vm_flags, vm_pgoff, file_path"
            f"{', raw' if raw else ''} FROM vmas WHERE dump_id = ? AND mm = ? ORDER BY seq",
            (self.id, s64(mm)))
        return [Vma(r[0], u(r[1]), u(r[2]), u(r[3]), u(r[4]), u(r[5]), r[6],
                    bytes(r[7]) if raw else None) for r in rows]

    def runs(self, mm: int, v: Vma):
        """The runs of VMA v, in va order, streamed (a VMA may hold millions). The walk cuts
        runs at VMA bounds, so the range of v is a probe of ix_page_runs_va; vma_seq only
        guards against overlapping VMAs."""
        rows = self.c.iter(
            "SELECT va, npages, kind, pa, swap_type, swap_offset FROM page_runs "
            "WHERE dump_id = ? AND mm = ? AND va >= ? AND va < ? AND vma_seq = ? ORDER BY va",
            (self.id, s64(mm), s64(v.start), s64(v.end), v.seq))
        return (Run(u(r[0]), r[1], r[2], u(r[3]), r[4], r[5]) for r in rows)

    def run_at(self, mm: int, va: int):
        """(run, page index in it) of the stored run holding user page va, or None: one
        indexed probe (ix_page_runs_va), whatever the size of the address space."""
        r = self.c.one(
            "SELECT va, npages, kind, pa, swap_type, swap_offset FROM page_runs "
            "WHERE dump_id = ? AND mm = ? AND va <= ? ORDER BY va DESC LIMIT 1",
            (self.id, s64(mm), s64(va)))
        if r is None:
            return None
        run = Run(u(r[0]), r[1], r[2], u(r[3]), r[4], r[5])
        if not run.va <= va < run.va + run.npages * self.page_size:
            return None
        return run, (va - run.va) // self.page_size

    def swapdev(self, typ: int | None) -> str:
        if self._swapdev is None:
            self._swapdev = dict(self.c.all(
                "SELECT type, path FROM swap_devices WHERE dump_id = ?", (self.id,)))
        if typ is None or typ >= self.swap_info_len or typ not in self._swapdev:
            return "(unknown swap location)"
        return self._swapdev[typ]

    # --- reverse lookups for -R ----------------------------------------------------
    def pages_with_pa(self, pa: int) -> list[tuple[int, int, int]]:
        """(mm, vma_seq, va) of every present page whose crash PHYSICAL equals pa."""
        rows = self.c.all(
            "SELECT mm, vma_seq, va, pa, npages FROM page_runs WHERE dump_id = ? AND kind = 0 "
            "AND pa <= ? AND pa > ?", (self.id, s64(pa), s64(pa - MAX_RUN_PAGES * self.page_size)))
        out = []
        for mm, seq, va, rpa, n in rows:
            d = pa - (rpa & U64)
            if d % self.page_size == 0 and d // self.page_size < n:
                out.append((u(mm), seq, u(va) + d))
        return out

    def pages_with_swap_offset(self, off: int) -> list[tuple[int, int, int]]:
        rows = self.c.all(
            "SELECT mm, vma_seq, va, swap_offset, npages FROM page_runs WHERE dump_id = ? "
            "AND kind = 1 AND swap_offset <= ? AND swap_offset > ?",
            (self.id, off, off - MAX_RUN_PAGES))
        return [(u(mm), seq, u(va) + (off - so) * self.page_size)
                for mm, seq, va, so, n in rows if off - so < n]

    def swap_runs_on_devices(self, ref_matches) -> list[tuple[int, int, int, int]]:
        """(mm, vma_seq, va, npages) of swap runs whose device string (crash's `SWAP: ...`
        text) satisfies ref_matches. Decided from the few swap_info entries, so the page
        runs are only read when some device matches; '(unknown swap location)' covers
        every type without a device, which needs a look at all swap runs."""
        self.swapdev(None)  # loads the device table
        types = [t for t, p in self._swapdev.items()
                 if t < self.swap_info_len and ref_matches(p)]
        unknown = ref_matches("(unknown swap location)")
        if not types and not unknown:
            return []
        where = []
        if types:
            where.append(f"swap_type IN ({','.join('?' * len(types))})")
        if unknown:
            known = [t for t in self._swapdev if t < self.swap_info_len]
            where.append(f"swap_type NOT IN ({','.join('?' * len(known))})" if known
                         else "1 = 1")
            types = types + known
        rows = self.c.all(
            "SELECT mm, vma_seq, va, npages FROM page_runs WHERE dump_id = ? AND kind = 1 "
            f"AND ({' OR '.join(where)})", (self.id, *types))
        return [(u(mm), seq, u(va), n) for mm, seq, va, n in rows]

    def vmas_matching(self, hexval: int | None, ref: str) -> list[tuple[int, int]]:
        """(mm, seq) of VMAs whose address or flags equal hexval or whose path matches ref."""
        out = []
        if hexval is not None:
            out += self.c.all("SELECT mm, seq FROM vmas WHERE dump_id = ? AND (vma = ? OR "
                              "vm_flags = ?)", (self.id, s64(hexval), s64(hexval)))
        if ref == "/":
            out += self.c.all("SELECT mm, seq FROM vmas WHERE dump_id = ? AND file_path = '/'",
                              (self.id,))
        elif ref:
            # Substring test on the path (crash's strstr); instr/strpos avoid LIKE wildcards.
            fn = "strpos(file_path, ?)" if self.c.pyformat else "instr(file_path, ?)"
            out += self.c.all(f"SELECT mm, seq FROM vmas WHERE dump_id = ? AND {fn} > 0",
                              (self.id, ref))
        return [(u(m), s) for m, s in out]

    def file_pages_at_offset(self, off: int) -> list[tuple[int, int, int]]:
        """(mm, vma_seq, va) where a file VMA would print `OFFSET: off` (if no entry there)."""
        if off % self.page_size:
            return []
        pg = off // self.page_size
        rows = self.c.all(
            "SELECT mm, seq, vm_start, vm_end, vm_pgoff FROM vmas WHERE dump_id = ? "
            "AND file_path IS NOT NULL AND file_path <> '' AND vm_pgoff <= ? "
            "AND vm_pgoff + (vm_end - vm_start) / ? > ?", (self.id, pg, self.page_size, pg))
        return [(u(m), seq, u(st) + (pg - u(po)) * self.page_size) for m, seq, st, en, po in rows]

    def vma_containing(self, va: int) -> list[tuple[int, int]]:
        return [(u(m), s) for m, s in self.c.all(
            "SELECT mm, seq FROM vmas WHERE dump_id = ? AND vm_start <= ? AND vm_end > ?",
            (self.id, s64(va), s64(va)))]

    # --- symbols (for -m / -v) -----------------------------------------------------
    def types_json(self) -> str:
        return self.c.one("SELECT types_json FROM kernels WHERE id = ?", (self.kernel_id,))[0]

    def pointer_symbols(self) -> dict[int, str]:
        """gdb's `<symbol+off>` for each pointer value `vm -m`/`-v` prints (made at ingest)."""
        return {u(a): s for a, s in self.c.all(
            "SELECT address, symbol FROM pointer_symbols WHERE dump_id = ?", (self.id,))}

    # --- page-table pages the dump did not hold ------------------------------------
    def table_faults(self, mm: int) -> list[tuple[int, int, str, str, str, int]]:
        """(va_start, va_end, cause, table_name, address_kind, address) of the mm's
        unreadable page-table pages, by va_start: crash's words for the failed read, as
        the ingest stored them. Loaded once per dump: a healthy dump has none."""
        if getattr(self, "_faults", None) is None:
            self._faults: dict[int, list] = {}
            for m, lo, hi, cause, what, kind, addr in self.c.all(
                    "SELECT mm, va_start, va_end, cause, table_name, address_kind, address "
                    "FROM page_table_faults WHERE dump_id = ? ORDER BY mm, va_start",
                    (self.id,)):
                self._faults.setdefault(u(m), []).append((u(lo), u(hi), cause, what, kind,
                                                          u(addr)))
        return self._faults.get(mm, [])

    def mm_pages(self) -> set[int]:
        """Pages (kernel address // page size) holding the start of an mm_struct the index
        holds: crash's is_valid_mm takes any address in the mm_struct slab."""
        if getattr(self, "_mm_pages", None) is None:
            self._mm_pages = {u(m) // self.page_size for (m,) in self.c.all(
                "SELECT mm FROM mms WHERE dump_id = ?", (self.id,))}
        return self._mm_pages

    def kernel_map(self, va: int) -> int | None:
        """Physical address of va by the kernel's own tables as the ingest kept them
        (kernel_maps), None where they map nothing."""
        row = self.c.one(
            "SELECT va, npages, pa FROM kernel_maps WHERE dump_id = ? AND va <= ? AND va > ? "
            "ORDER BY va DESC LIMIT 1",
            (self.id, s64(va), s64(va - MAX_RUN_PAGES * self.page_size)))
        if row is None or not u(row[0]) <= va < u(row[0]) + row[1] * self.page_size:
            return None
        return u(row[2]) + (va - u(row[0]))

    def kernel_tables_kept(self) -> bool:
        """Whether the index holds the kernel's table mappings (kernel_maps), so a
        kernel address kvtop cannot place is one crash's table walk fails on."""
        if getattr(self, "_ktables", None) is None:
            self._ktables = self.c.one(
                "SELECT 1 FROM kernel_maps WHERE dump_id = ? LIMIT 1", (self.id,)) is not None
        return self._ktables

    def untagged(self, va: int) -> int:
        """The address crash's arm64 IS_KVADDR and VTOP look at: an MTE/KASAN tag in the top
        byte (0xf0..0xfe) reset to 0xff (arm64.c mte_tag_reset); x86_64: va itself."""
        if self.arch == "arm64" and 0xF0 <= va >> 56 < 0xFF:
            return va | (0xFF << 56)
        return va

    def kvtop(self, va: int) -> int | None:
        """Physical address of a direct-map (or x86_64 kernel-image) address, from the
        stored page_offset and phys_base (indexer.arch: x86_64 phys_base, arm64
        PHYS_OFFSET); None elsewhere."""
        if self.arch == "arm64":
            va = self.untagged(va)
            # __lm_to_phys: ((addr) & ~PAGE_OFFSET) + PHYS_OFFSET, below the upper half
            # of the space the MMU uses (image, vmalloc, vmemmap).
            va_bits = self.user_va_bits()
            if self.page_offset <= va < (-(1 << (va_bits - 1))) & U64:
                return ((va & ~self.page_offset & U64) + self.phys_base) & U64
            return self.kernel_map(va)   # crash walks the kernel's tables there
        if va >= 0xFFFFFFFF80000000:
            return (va - 0xFFFFFFFF80000000 + self.phys_base) & ((1 << 64) - 1)
        if va >= self.page_offset:
            return va - self.page_offset
        return None

    def user_va_bits(self) -> int:
        """The VA size the MMU uses (arm64: 64 - TCR_EL1.T1SZ), as ingest stored it
        (dump_info user_va_bits); an index from before it: the stored levels' index bits
        plus the page offset, which is right for 4 KiB pages."""
        if getattr(self, "_va_bits", None) is None:
            row = self.c.one("SELECT value FROM dump_info WHERE dump_id = ? AND key = ?",
                             (self.id, "user_va_bits"))
            shift = self.page_size.bit_length() - 1
            self._va_bits = int(row[0]) if row else shift + self.paging_levels * (shift - 3)
        return self._va_bits

    def vma_fault(self, mm: int) -> tuple[int, int, int, str] | None:
        """(seq, vma, address, cause) of the first VMA of the mm the dump lost, where
        crash's VMA walk stops (indexer: vma_faults). Loaded once per dump."""
        if getattr(self, "_vma_faults", None) is None:
            self._vma_faults = {u(m): (seq, u(v), u(a), cause) for m, seq, v, a, cause in self.c.all(
                "SELECT mm, seq, vma, address, cause FROM vma_faults WHERE dump_id = ?",
                (self.id,))}
        return self._vma_faults.get(mm)

    def dump_format(self) -> tuple[str, int]:
        """(format, paging levels) of the dump: 'elf', 'kdump', 'kdump-flattened'."""
        if getattr(self, "_format", None) is None:
            self._format = tuple(self.c.one(
                "SELECT format, paging_levels FROM dumps WHERE id = ?", (self.id,)))
        return self._format
