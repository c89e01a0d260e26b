"""One pass over a dump: open it, learn the kernel, walk every task and mm, store the rows.

Tasks, mms and VMAs are walked before the database is touched; the page tables are then
walked one mm at a time, in chunks, inside the single transaction that writes the dump
(so memory holds one chunk of one address space, never a whole one). A failed or
interrupted ingest leaves no trace, and a re-ingested name is replaced only when the new
copy is complete.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from vmdex.indexer.arch import detect
from vmdex.indexer.arch.memory import KernelMemory
from vmdex.indexer.arch.pagewalk import iter_user_leaves, kernel_map_runs
from vmdex.indexer.errors import DumpError, KernelError, MemoryReadError, VmdexError, WalkError
from vmdex.indexer.image import DumpImage
from vmdex.indexer.kernel.vmcoreinfo import VmcoreInfo
from vmdex.indexer.target import IndexTarget
from vmdex.indexer.walk import procinfo
from vmdex.indexer.walk.kernel import Kernel
from vmdex.indexer.walk.mm import Mm, crash_rss, read_mm
from vmdex.indexer.walk.modules import read_modules
from vmdex.indexer.walk.pages import PageRuns, RunBuilder
from vmdex.indexer.walk.parallel import MIN_PARALLEL_PAGES, ParallelWalk, total_pages
from vmdex.indexer.walk.paths import PathResolver, swap_devices
from vmdex.indexer.walk.taskstate import read_state_names, state_string, states_from_names, task_state
from vmdex.indexer.walk.tasks import Task, cpu_count, walk_tasks

Progress = Callable[[str, int, int], None]

# x86-64 and arm64 both stop at 52 physical address bits.
MAX_PHYSADDR_BITS = 52


def _noop(stage: str, done: int, total: int) -> None:
    pass


def _check_vmlinux(info: VmcoreInfo, vmlinux_build_id: str | None, vmlinux_path: Path,
                   stext: int | None) -> int:
    """Refuse a vmlinux that does not belong to the dump; return the KASLR offset."""
    dump_bid = (info.build_id or "").lower()
    if dump_bid and vmlinux_build_id and not vmlinux_build_id.lower().startswith(dump_bid[:40]):
        raise KernelError(f"{vmlinux_path}: build id {vmlinux_build_id} does not match the "
                          f"dump's {dump_bid} (kernel {info.osrelease}): wrong vmlinux")
    offset = info.kerneloffset or 0
    dump_stext = info.symbol("_stext")
    if stext is not None and dump_stext is not None:
        derived = dump_stext - stext
        if derived != offset or derived & 0xFFF:
            raise KernelError(f"{vmlinux_path}: _stext does not line up with the dump's "
                              f"(kernel {info.osrelease}): wrong vmlinux")
    return offset


class _Stage:
    """What the walk is reading, so a fatal read error can say so (one line, with the file)."""

    def __init__(self, path: str, vmlinux: Path, release: str = ""):
        self.path, self.vmlinux, self.what = path, vmlinux, "the kernel"
        self.release = release or "?"

    def fail(self, exc: Exception) -> VmdexError:
        why = str(exc)
        if isinstance(exc, WalkError) and why.startswith("kernel has no "):
            # A layout or symbol the walk needs is missing: the vmlinux, not the dump.
            return KernelError(f"{self.vmlinux}: kernel {self.release}: debug info "
                               f"{why[len('kernel '):]} (needed to read {self.what}): "
                               "damaged vmlinux, or a kernel vmdex does not support yet")
        if isinstance(exc, MemoryReadError) and exc.paddr >> MAX_PHYSADDR_BITS:
            # No machine has RAM there: vmdex's reading of this kernel's layout is wrong,
            # not the dump (the 7.x per-CPU change first showed up this way).
            return KernelError(f"{self.path}: kernel {self.release}: reading {self.what} "
                               f"led to physical address {exc.paddr:x}, beyond any RAM: a "
                               "kernel layout vmdex does not support yet")
        if why.startswith(self.path + ": "):
            why = why[len(self.path) + 2:]
        return WalkError(f"{self.path}: cannot read {self.what} from the dump ({why}): "
                         "the dump is damaged, truncated or filtered too hard")


def walk_dump(phys, info: VmcoreInfo, types, symbol_address, vmlinux_path: Path,
              vmlinux_build_id: str | None, name: str, progress: Progress = _noop,
              workers: int = 1) -> DumpImage:
    """The whole walk. Damage confined to one task, mm or page table is recorded in the
    image's `errors` / `faults`; a structure every answer depends on (the task list, the
    per-CPU areas) that cannot be read is a WalkError naming the dump and what was read."""
    stage = _Stage(str(phys.path), vmlinux_path, info.osrelease or "")
    try:
        return _walk_dump(phys, info, types, symbol_address, vmlinux_path, vmlinux_build_id,
                          name, progress, stage, workers)
    except (MemoryReadError, WalkError) as exc:
        raise stage.fail(exc) from None


def _walk_dump(phys, info: VmcoreInfo, types, symbol_address, vmlinux_path: Path,
               vmlinux_build_id: str | None, name: str, progress: Progress,
               stage: _Stage, workers: int) -> DumpImage:
    errors: list[str] = []
    kaslr = _check_vmlinux(info, vmlinux_build_id, vmlinux_path, symbol_address("_stext"))
    arch = detect(phys, info)
    mem = KernelMemory(phys, arch)
    k = Kernel(mem, types, symbol_address, kaslr)
    stage.what = "the kernel's address layout"
    arch.setup(k, info)
    _check_banner(k, info, vmlinux_path, vmlinux_build_id)

    stage.what = "the task list (per-CPU runqueues, init_pid_ns)"
    tasks = walk_tasks(k, errors)
    state_names = read_state_names(k)
    states = states_from_names(state_names, info.osrelease or "")
    for t in tasks:     # crash's ps ST column, from the kernel's own state-name table
        t.st = state_string(states, task_state(t.state, t.exit_state)) if states else "??"
    stage.what = "the kernel"
    progress("tasks", len(tasks), len(tasks))
    paths = PathResolver(k)
    mms: dict[int, Mm] = {}
    mm_addrs = [t.mm for t in tasks if t.mm]
    for i, a in enumerate(dict.fromkeys(mm_addrs)):
        try:
            mms[a] = read_mm(k, a, paths, errors)
        except (MemoryReadError, WalkError) as exc:
            errors.append(f"mm {a:x}: {exc}")
        progress("mm", i + 1, len(set(mm_addrs)))

    # Per-thread RSS caches are summed over every task of the tgid, as crash does.
    caches: dict[int, list[list[int]]] = {}
    for t in tasks:
        caches.setdefault(t.tgid, []).append(t.rss_cache)
    rss = {}
    for t in tasks:
        mm = mms.get(t.mm)
        rss[t.addr] = crash_rss(k, mm.counters, caches[t.tgid]) if mm else 0

    faults: list = []
    from vmdex.indexer.walk.smaps_ingest import prepare as smaps_prepare
    stage.what = "the smaps layouts"
    smaps = smaps_prepare(k, arch, arch.kernel_pgd_pa, mms, errors)
    stage.what = "the kernel"

    user_top = arch.user_top

    def walk_mm(a: int) -> Iterator[tuple[int, PageRuns]]:
        """One mm's page runs, chunk by chunk as the walk streams them."""
        mm = mms[a]
        ranges = [(v.start, v.end) for v in mm.vmas]
        mm_faults: list = []
        builder = RunBuilder(ranges, arch)
        gather = smaps.gatherer(phys, a, 0, ranges) if smaps else None
        try:
            for batch in iter_user_leaves(phys, arch, arch.user_root(mm.pgd), user_top,
                                          ranges, mm_faults):
                if gather:
                    gather.feed(batch)
                runs = builder.feed(batch)
                if len(runs):
                    yield a, runs
            yield a, builder.finish()
            if gather:
                yield gather.finish()
        except (MemoryReadError, WalkError, ValueError, IndexError, OverflowError) as exc:
            # Garbage VMAs or tables that trip the array code: the rest of this mm's
            # pages are unknown (what was stored before stays, and the error says so).
            errors.append(f"mm {a:x}: page tables not walked to the end: "
                          f"{type(exc).__name__}: {exc}")
            if gather:
                yield gather.abandon("the page tables could not be walked to the end")
        faults.extend((a, f) for f in mm_faults)

    # With several workers the mms are walked in other processes (walk.parallel), started
    # now: they walk while this process reads the rest (VMA texts, ps, sys, modules) and
    # the store begins; their results wait in a queue bounded in bytes.
    walk = None
    if workers > 1 and total_pages(mms, arch.page_size) >= MIN_PARALLEL_PAGES:
        source = getattr(phys, "paths", None) or str(phys.path)   # a split set: its files
        walk = ParallelWalk(mms, source, arch, user_top, workers, smaps)

    def page_runs() -> Iterator:
        """Every mm's page runs. The store writes them inside its transaction as they
        come, so memory holds a few chunks, never a whole address space or the dump."""
        if walk is not None:
            yield from walk.runs(walk_mm, faults, progress)
            return
        for i, a in enumerate(mms):
            yield from walk_mm(a)
            progress("page tables", i + 1, len(mms))

    # stops the workers when the ingest fails before the store reads their results
    page_runs.close = walk.close if walk is not None else (lambda: None)
    try:
        return _walk_rest(phys, info, k, arch, kaslr, vmlinux_build_id, name, stage, errors,
                          tasks, rss, mms, paths, smaps, page_runs, faults, state_names)
    except BaseException:
        page_runs.close()
        raise


def _walk_rest(phys, info, k, arch, kaslr, vmlinux_build_id, name, stage, errors, tasks, rss,
               mms, paths, smaps, page_runs, faults, state_names) -> DumpImage:
    """What the walk reads besides the page tables (while the workers walk those)."""
    if smaps is not None:
        from vmdex.indexer.walk.smaps_ingest import read_texts
        stage.what = "the smaps layouts"
        read_texts(smaps, k, arch, tasks, mms, errors)
        stage.what = "the kernel"
    kmap_faults: list = []
    kernel_maps = kernel_map_runs(phys, arch, kmap_faults)
    if kmap_faults:
        errors.append(f"kernel page tables: {len(kmap_faults)} table pages unreadable "
                      f"(first at {kmap_faults[0].pa:x}): vm -M there is unknown")
    stage.what = "swap_info"
    swap_info = swap_devices(k, paths, errors)
    stage.what = "node_data (the size of RAM)"
    nodes = _memory_nodes(k)
    prlen = _paddr_prlen(k, nodes)
    ram_end = _ram_end(k, nodes)
    ram_start = _ram_start(k, nodes)
    stage.what = "the CPU masks"
    cpus = cpu_count(k)
    stage.what = "what ps reads of each task (times, rlimits, argument pages)"
    task_info = procinfo.task_rows(k, phys, arch, tasks, mms)
    facts = procinfo.dump_facts(k, arch.page_size, cpus)
    from vmdex.indexer.walk.system import system_facts
    stage.what = "the system facts (sys)"
    task_errors = any(e.startswith(("idle task", "pid ")) for e in errors)
    sys_info = system_facts(k, phys, nodes, cpus, None if task_errors else len(tasks))
    stage.what = "the loaded modules"
    module_symbols = read_modules(k, errors)
    stage.what = "the kernel"
    return DumpImage(
        name=name, source_path=str(phys.path), format=phys.format,
        compression=phys.compression,
        release=info.osrelease or getattr(phys, "utsname_release", "") or "",
        build_id=vmlinux_build_id or info.build_id or "", arch=arch, kaslr_offset=kaslr,
        cpus=cpus, paddr_prlen=prlen, ram_end=ram_end, task_state_names=state_names,
        sparsemem=(info.number("SECTION_SIZE_BITS"), info.number("MAX_PHYSMEM_BITS")),
        default_task=_default_task(k, tasks),
        init_mm=k.sym("init_mm"), swap=swap_info,
        has_expand_upwards=k.sym("expand_upwards") is not None,
        has_pmd_huge_pte=k.has("mm_struct", "pmd_huge_pte"),
        tasks=tasks, rss=rss, mms=mms, page_runs=page_runs, faults=faults, errors=errors,
        kernel_maps=kernel_maps, ram_start=ram_start, smaps=smaps,
        info={**facts, **sys_info, "user_va_bits": str(arch.user_top.bit_length() - 1)},
        task_info=task_info, module_symbols=module_symbols)


def _check_banner(k: Kernel, info: VmcoreInfo, vmlinux_path: Path,
                  vmlinux_build_id: str | None = None) -> None:
    """linux_banner in the dump's memory must name the release VMCOREINFO names: a vmlinux
    whose symbols point elsewhere (another build of the same release) fails here."""
    sym = k.sym("linux_banner")
    if sym is None or not info.osrelease:
        return
    try:
        banner = k.mem.cstring(sym, 512).decode("latin-1")
    except (MemoryReadError, WalkError, VmdexError):
        banner = ""
    if banner.startswith(f"Linux version {info.osrelease} "):
        return
    dump_bid = (info.build_id or "").lower()
    if dump_bid and vmlinux_build_id and vmlinux_build_id.lower().startswith(dump_bid):
        # The build ids agree, so the vmlinux is the right one: the dump's memory is bad.
        raise DumpError(f"{k.mem.phys.path}: kernel memory is damaged: linux_banner reads "
                        f"{banner[:40]!r}, not Linux version {info.osrelease} (the vmlinux's "
                        "build id matches the dump)")
    raise KernelError(f"{vmlinux_path}: does not belong to the dump (dump kernel "
                      f"{info.osrelease}; linux_banner there reads {banner[:40]!r}): "
                      "wrong vmlinux")


def _memory_nodes(k: Kernel) -> list[int]:
    """The pglist_data of each NUMA node (node_data[]), or contig_page_data."""
    nd = k.sym("node_data")
    if nd is not None:
        n = k.types.variable_array_length("node_data") or 1
        raw = k.mem.read(nd, 8 * n)
        return [a for a in (int.from_bytes(raw[i:i + 8], "little") for i in range(0, 8 * n, 8))
                if a]
    single = k.sym("contig_page_data")
    return [single] if single is not None else []


def _paddr_prlen(k: Kernel, nodes: list[int]) -> int:
    """crash's PHYSICAL width: hex digits of present RAM (Σ node_present_pages × page size)."""
    total = 0
    for node in nodes:
        present = k.mem.u64(node + k.off("pglist_data", "node_present_pages"))
        if present == 0:
            present = k.mem.u64(node + k.off("pglist_data", "node_spanned_pages"))
        total += present * k.mem.page
    return len(f"{total:x}") if total else 8


def _ram_start(k: Kernel, nodes: list[int]) -> int:
    """The start of the lowest node's span, in bytes (0 on x86_64; arm64 RAM starts at
    PHYS_OFFSET): below it no page has a struct page either."""
    starts = [k.mem.u64(node + k.off("pglist_data", "node_start_pfn")) for node in nodes]
    return min(starts) * k.mem.page if starts else 0


def _ram_end(k: Kernel, nodes: list[int]) -> int:
    """The end of the highest node's span, in bytes: past it no page has a struct page."""
    end = 0
    for node in nodes:
        start = k.mem.u64(node + k.off("pglist_data", "node_start_pfn"))
        spanned = k.mem.u64(node + k.off("pglist_data", "node_spanned_pages"))
        end = max(end, (start + spanned) * k.mem.page)
    return end


def _pointer_symbols(img: DumpImage, types, symtab) -> dict[int, str]:
    from vmdex.indexer.kernel.pointers import collect_pointer_symbols

    objects = [("mm_struct", m.raw, m.addr) for m in img.mms.values()]
    objects += [("vm_area_struct", v.raw, v.addr) for m in img.mms.values() for v in m.vmas]
    modules = img.module_symbols

    def symbolize(a: int) -> str | None:
        # gdb's own lookup (the vmlinux) first; crash answers for what it does not know
        s = symtab.symbolize(a, img.kaslr_offset)
        return s if s is not None or modules is None else modules.symbolize(a)

    return collect_pointer_symbols(types.data, symbolize, objects)


def _panic_cpu(k: Kernel) -> int | None:
    """The CPU that panicked (panic_cpu) or ran the kdump shutdown (x86 crashing_cpu)."""
    for name in ("panic_cpu", "crashing_cpu"):
        sym = k.sym(name)
        if sym is None:
            continue
        try:
            cpu = k.mem.sint(sym, 4)
        except (MemoryReadError, WalkError):
            continue
        if 0 <= cpu < len(k.per_cpu_offsets):
            return cpu
    return None


def _default_task(k: Kernel, tasks: list[Task]) -> int:
    """crash's startup context: the task running on the panicking CPU; on a dump taken
    without a panic (a live QEMU dump), the idle task of CPU 0."""
    cpu = _panic_cpu(k)
    if cpu is not None:
        try:
            curr = k.ptr(k.percpu(k.need_sym("runqueues"), cpu) + k.off("rq", "curr"))
            if any(t.addr == curr for t in tasks):
                return curr
        except (MemoryReadError, WalkError):
            pass
    for t in tasks:
        if t.is_idle and t.cpu == 0:
            return t.addr
    return tasks[0].addr if tasks else 0


@contextmanager
def index_errors(engine):
    """The index itself failing (unwritable path, not a database, disk full, locked too
    long): one line naming the index instead of a driver traceback. The transaction is
    rolled back by then, so what the index held is untouched."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None) or exc
        first = (str(orig).strip().splitlines() or [""])[0]
        where = engine.url.render_as_string(hide_password=True)
        if where.startswith("sqlite:///"):
            where = where[len("sqlite:///"):]
        raise VmdexError(f"index {where}: {first or type(orig).__name__}") from None


def ingest(index: IndexTarget, dump_path: Path, vmlinux_path: Path | None,
           name: str | None = None, progress: Progress = _noop, workers: int = 1
           ) -> tuple[DumpImage, float]:
    """Read a dump once and store it under `name` in `index`; returns what was stored and
    the time. `workers` > 1 walks the page tables in that many processes
    (indexer.walk.parallel). A new SQLite index is created after the walk has started.

    Without `vmlinux_path` the kernel comes from the index when it already holds the dump's
    build (nothing is read from any vmlinux then), else from indexer.kernel.locate, else
    from the dump itself (indexer.kernel.source); `vmlinux_path` may also be one of
    source.MODES (read the kernel from the dump at once; never from the dump)."""
    from vmdex.indexer.dumpfile import open_dump
    from vmdex.indexer.errors import DumpError
    from vmdex.indexer.kernel.source import MODES, choose_kernel

    t0 = time.perf_counter()
    # a makedumpfile --split set comes as a tuple of its files (indexer.dumpfile.split)
    paths = [Path(p) for p in dump_path] if isinstance(dump_path, (list, tuple)) \
        else [Path(dump_path)]
    dump_path = paths[0]
    mode = vmlinux_path if vmlinux_path in MODES else None   # from the dump, or never
    if mode:
        vmlinux_path = None
    if vmlinux_path is not None:
        vmlinux_path = Path(vmlinux_path)
        if not vmlinux_path.is_file():
            raise KernelError(f"{vmlinux_path}: no such vmlinux")
    new_index = index.is_new()
    if not new_index:
        _upgrade(index.engine)
    with open_dump(paths if len(paths) > 1 else dump_path) as phys:
        if not phys.vmcoreinfo:
            raise DumpError(f"{dump_path}: no VMCOREINFO in the dump: cannot locate the kernel")
        info = VmcoreInfo.parse(phys.vmcoreinfo)
        if new_index:
            kc = choose_kernel(None, phys, info, str(dump_path), vmlinux_path, mode, progress)
        else:
            with index_errors(index.engine):
                kc = choose_kernel(index.engine, phys, info, str(dump_path), vmlinux_path,
                                   mode, progress)
        types, symtab, bid = kc.types, kc.symtab, kc.build_id
        vmlinux_path, kernel_from = kc.vmlinux, kc.kernel_from
        progress("types", 1, 1)
        img = walk_dump(phys, info, types, symtab.address, vmlinux_path or kc.label, bid,
                        name or set_name(paths), progress, workers)
        try:
            from vmdex.indexer import store     # SQLAlchemy: while the workers walk

            engine = index.engine
            if new_index:
                _upgrade(engine)
            img.source_path = os.path.abspath(dump_path)
            img.source_size = _file_size(dump_path)
            img.kernel_from = kernel_from
            img.kernel_source = kc.source
            # sys's KERNEL and DUMPFILE: the paths as typed (crash prints its command line's);
            # a kernel from the index's cache names the file it was first read from (absolute)
            img.info["dumpfile"] = "\n".join(str(p) for p in paths)
            if vmlinux_path is not None:
                img.info["kernel"] = str(vmlinux_path)
                img.info["kernel_file"] = os.path.abspath(vmlinux_path)
            else:
                with index_errors(engine):
                    first = store.kernel_source(engine, bid)
                read_now = kc.cached is None      # from this dump's BTF and kallsyms
                img.info["kernel"] = img.info["kernel_file"] = \
                    kc.label if read_now else first or kernel_from
            img.pointer_symbols = _pointer_symbols(img, types, symtab)
            with index_errors(engine):
                kernel_id = store.store_kernel(engine, bid, info.osrelease or "",
                                               kc.cached[0] if kc.cached else types.to_json(),
                                               kc.cached[1] if kc.cached else symtab.to_bytes(),
                                               source=kc.source, replace=kc.replace)
                seconds = time.perf_counter() - t0
                store.store_dump(engine, img, kernel_id, seconds)
        finally:
            img.page_runs.close()   # the walk's workers, when the store never read them
    return img, time.perf_counter() - t0


def _upgrade(engine) -> None:
    from vmdex.indexer.db import upgrade

    with index_errors(engine):
        upgrade(engine)


def set_name(paths: list[Path]) -> str:
    """A dump's default name: its file's name; a split set's: what its files' names share
    (vmcore.kdump-split.1 and .2: vmcore.kdump-split)."""
    if len(paths) == 1:
        return paths[0].name
    common = os.path.commonprefix([p.name for p in paths]).rstrip(".-_")
    return common or paths[0].name


def _file_size(path: Path) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None
