"""DumpImage: everything the walk found in one dump, handed from the walk to the store.

Its own module so that the store (indexer.store) and the walk (indexer.ingest) each import
it and not each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

from vmdex.indexer.arch.base import Arch
from vmdex.indexer.walk.mm import Mm
from vmdex.indexer.walk.pages import PageRuns
from vmdex.indexer.walk.tasks import Task


@dataclass
class DumpImage:
    """Everything the walk found in one dump, ready to be stored."""

    name: str
    source_path: str
    format: str
    compression: str
    release: str
    build_id: str
    arch: Arch
    kaslr_offset: int
    cpus: int
    paddr_prlen: int
    ram_end: int
    task_state_names: list[str] | None
    sparsemem: tuple[int | None, int | None]  # (SECTION_SIZE_BITS, MAX_PHYSMEM_BITS)
    default_task: int
    init_mm: int | None
    swap: tuple[int, dict[int, str]] | None
    has_expand_upwards: bool
    has_pmd_huge_pte: bool
    tasks: list[Task]
    rss: dict[int, int]                       # task addr -> crash RSS pages
    mms: dict[int, Mm]
    page_runs: Callable[[], Iterator[tuple[int, PageRuns]]]  # per-mm walk, run by the store
    faults: list[tuple[int, object]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    pointer_symbols: dict[int, str] = field(default_factory=dict)  # for vm -m / -v
    module_symbols: object = None             # indexer.walk.modules.ModuleSymbols, or None
    run_count: int = 0                        # page runs stored (set while storing)
    source_size: int | None = None            # bytes of the dump file (`ingest DIR` skips)
    kernel_from: str = ""                     # the vmlinux read, or the cached kernel row
    kernel_source: str = "vmlinux"           # where its types and symbols were read (or "dump")
    kernel_maps: list[tuple[int, int, int]] = field(default_factory=list)  # (va, npages, pa)
    ram_start: int = 0                        # start of the lowest node's span (bytes)
    smaps: object = None                      # indexer.walk.smaps_ingest.SmapsImage, or None
    info: dict[str, str] = field(default_factory=dict)   # dump_info rows: sys's facts
    task_info: list[dict] = field(default_factory=list)  # task_info rows (no dump_id)
