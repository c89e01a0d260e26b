"""The index schema: vmdex's public interface (documented in docs/schema.md).

64-bit kernel values (pointers, PTEs, vm_flags) are stored as the signed two's-complement
int64 of the unsigned value, so they fit SQLite and PostgreSQL BIGINT alike; SQLite's
printf('%x', v) and PostgreSQL's to_hex(v) print them as the kernel would.
Every row belongs to one dump (dump_id); a dump becomes visible in one transaction.
"""
from __future__ import annotations

from sqlalchemy import (BigInteger, Boolean, Column, ForeignKey, Index, Integer, LargeBinary,
                        MetaData, SmallInteger, String, Table, Text)

from vmdex.migrations.views import FIGURES as SMAPS_FIGURES

metadata = MetaData()
I64 = BigInteger().with_variant(Integer, "sqlite")  # INTEGER in SQLite is already 64-bit

kernels = Table(
    "kernels", metadata,
    Column("id", Integer, primary_key=True),
    Column("build_id", String(80), nullable=False, unique=True),
    Column("release", String(200), nullable=False),
    Column("types_json", Text, nullable=False),   # layouts + render trees from DWARF
    Column("symtab", LargeBinary, nullable=False),  # packed .symtab (indexer.kernel.symtab)
    Column("source", String(16)),   # read from: "vmlinux" (NULL: older rows) or "dump"
)

dumps = Table(
    "dumps", metadata,
    # in the order the migrations added them (0001 first), which create_at_head keeps
    Column("id", Integer, primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("kernel_id", Integer, ForeignKey("kernels.id"), nullable=False),
    Column("source_path", Text, nullable=False),
    Column("format", String(40), nullable=False),
    Column("compression", String(40), nullable=False),
    Column("release", String(200), nullable=False),
    Column("ingested_at", String(40), nullable=False),
    Column("ingest_seconds", Integer),
    Column("kaslr_offset", I64, nullable=False),
    Column("phys_base", I64, nullable=False),
    Column("page_offset", I64, nullable=False),
    Column("paging_levels", SmallInteger, nullable=False),
    Column("cpus", Integer, nullable=False),
    Column("paddr_prlen", SmallInteger, nullable=False),   # crash's PHYSICAL column width
    Column("default_task", I64, nullable=False),           # crash's startup context
    Column("init_mm", I64),
    Column("swap_lines", Boolean, nullable=False),         # nr_swapfiles + swap_info exist
    Column("swap_info_len", Integer, nullable=False),
    Column("has_expand_upwards", Boolean, nullable=False),  # crash -f: 0x200 name
    Column("has_pmd_huge_pte", Boolean, nullable=False),    # crash -f: 0x1000000 name
    Column("task_count", Integer, nullable=False),
    Column("vma_count", Integer, nullable=False),
    Column("page_run_count", Integer, nullable=False),
    Column("error_count", Integer, nullable=False),
    Column("ram_end", I64),                                  # end of the highest node's span (bytes)
    Column("task_state_names", Text),                        # task_state_array, one per line
    Column("section_size_bits", SmallInteger),               # VMCOREINFO (sparsemem)
    Column("max_physmem_bits", SmallInteger),                # VMCOREINFO (sparsemem)
    Column("source_size", I64),                              # bytes at ingest (migration 0005)
    Column("arch", String(16), nullable=False, server_default="x86_64"),   # indexer.arch (0006)
    Column("page_size", Integer, nullable=False, server_default="4096"),  # bytes (0006)
    Column("ram_start", I64),                                # start of the lowest node's span (0006)
    Column("kernel_source", String(16)),     # "vmlinux" or "dump": what it was ingested with (0010)
    Index("ix_dumps_source", "source_path", "source_size"),   # `vmdex ingest DIR` skips
)

tasks = Table(
    "tasks", metadata,
    Column("dump_id", Integer, ForeignKey("dumps.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),                 # crash's order (foreach)
    Column("task", I64, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("ppid", Integer, nullable=False),
    Column("tgid", Integer, nullable=False),
    Column("cpu", Integer, nullable=False),
    Column("comm", String(64), nullable=False),
    Column("state", I64, nullable=False),
    Column("exit_state", I64, nullable=False),
    Column("st", String(4), nullable=False),
    Column("flags", I64, nullable=False),
    Column("is_idle", Boolean, nullable=False),
    Column("is_active", Boolean, nullable=False),          # running on a CPU at dump time
    Column("mm", I64),                                      # NULL: kernel thread / idle
    Column("rss_pages", I64, nullable=False),               # crash's RSS for this task
    Index("ix_tasks_pk", "dump_id", "seq", unique=True),
    Index("ix_tasks_pid", "dump_id", "pid"),
    Index("ix_tasks_task", "dump_id", "task"),
    Index("ix_tasks_mm", "dump_id", "mm"),
)

mms = Table(
    "mms", metadata,
    Column("dump_id", Integer, ForeignKey("dumps.id", ondelete="CASCADE"), nullable=False),
    Column("mm", I64, nullable=False),
    Column("pgd", I64, nullable=False),
    Column("total_vm", I64, nullable=False),                # pages
    Column("map_count", Integer, nullable=False),
    Column("mm_count", Integer, nullable=False),
    Column("raw", LargeBinary, nullable=False),             # mm_struct bytes for vm -m
    Index("ix_mms_pk", "dump_id", "mm", unique=True),
    Index("ix_mms_pgd", "dump_id", "pgd"),
)

vmas = Table(
    "vmas", metadata,
    Column("dump_id", Integer, ForeignKey("dumps.id", ondelete="CASCADE"), nullable=False),
    Column("mm", I64, nullable=False),
    Column("seq", Integer, nullable=False),                 # address order within the mm
    Column("vma", I64, nullable=False),
    Column("vm_start", I64, nullable=False),
    Column("vm_end", I64, nullable=False),
    Column("vm_flags", I64, nullable=False),
    Column("vm_pgoff", I64, nullable=False),
    Column("file_path", Text),                              # crash's path; NULL: anonymous
    Column("raw", LargeBinary, nullable=False),             # vm_area_struct bytes for vm -v
    Index("ix_vmas_pk", "dump_id", "mm", "seq", unique=True),
    Index("ix_vmas_vma", "dump_id", "vma"),
    Index("ix_vmas_flags", "dump_id", "vm_flags"),
)

page_runs = Table(
    "page_runs", metadata,
    Column("dump_id", Integer, ForeignKey("dumps.id", ondelete="CASCADE"), nullable=False),
    Column("mm", I64, nullable=False),
    Column("vma_seq", Integer, nullable=False),
    Column("va", I64, nullable=False),                      # first virtual page
    Column("npages", Integer, nullable=False),              # ≤ indexer.runs.MAX_RUN_PAGES
    Column("level", SmallInteger, nullable=False),          # 1 PTE, 2 PMD, 3 PUD leaf
    Column("kind", SmallInteger, nullable=False),           # 0 present, 1 swap/non-present
    Column("pa", I64),                                      # present: crash's PHYSICAL of va
    Column("swap_type", Integer),
    Column("swap_offset", I64),
    Column("pte", I64, nullable=False),                     # raw entry of the first page
    Index("ix_page_runs_va", "dump_id", "mm", "va"),
    Index("ix_page_runs_pa", "dump_id", "pa"),
    Index("ix_page_runs_swap", "dump_id", "swap_offset"),
)

page_table_faults = Table(
    "page_table_faults", metadata,
    Column("dump_id", Integer, ForeignKey("dumps.id", ondelete="CASCADE"), nullable=False),
    Column("mm", I64, nullable=False),
    Column("va_start", I64, nullable=False),
    Column("va_end", I64, nullable=False),
    Column("level", SmallInteger, nullable=False),
    Column("pa", I64, nullable=False),
    Column("reason", Text, nullable=False),                 # the read error's text
    # crash's words for the failed read (migration 0006): `cause` a stored code as in
    # vma_faults, `table_name` readmem's type ("pmd page"...), `address_kind` its memory
    # type ("physical", "kernel virtual") and `address` the address it names.
    Column("cause", Text),
    Column("table_name", Text),
    Column("address_kind", Text),
    Column("address", I64),
    Index("ix_pt_faults", "dump_id", "mm", "va_start"),
)

kernel_maps = Table(
    # Mappings of the kernel's own page tables where crash's kvtop walks them for `vm -M`
    # (arm64: the upper half of the VA space but the linear map; none on x86_64 yet):
    # physically contiguous stretches of at most 512 pages (migration 0006).
    "kernel_maps", metadata,
    Column("dump_id", Integer, ForeignKey("dumps.id", ondelete="CASCADE"), nullable=False),
    Column("va", I64, nullable=False),
    Column("npages", Integer, nullable=False),
    Column("pa", I64, nullable=False),
    Index("ix_kernel_maps", "dump_id", "va"),
)

swap_devices = Table(
    "swap_devices", metadata,
    Column("dump_id", Integer, ForeignKey("dumps.id", ondelete="CASCADE"), nullable=False),
    Column("type", Integer, nullable=False),
    Column("path", Text, nullable=False),
    Index("ix_swap_devices_pk", "dump_id", "type", unique=True),
)

pointer_symbols = Table(
    "pointer_symbols", metadata,
    Column("dump_id", Integer, ForeignKey("dumps.id", ondelete="CASCADE"), nullable=False),
    Column("address", I64, nullable=False),                 # a pointer value in mm/VMA bytes
    Column("symbol", Text, nullable=False),                 # gdb's annotation: sym or sym+off
    Index("ix_pointer_symbols", "dump_id", "address", unique=True),
)

vma_faults = Table(
    # A VMA the dump lost: crash's VMA walk (fill_vma_cache) stops at it. `seq` is its
    # place in crash's order (the VMAs before it have smaller seq), `cause` a stored code:
    # excluded | absent | incomplete | zlib:<code> | unreadable.
    "vma_faults", metadata,
    Column("dump_id", Integer, ForeignKey("dumps.id", ondelete="CASCADE"), nullable=False),
    Column("mm", I64, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("vma", I64, nullable=False),                     # the vm_area_struct's address
    Column("address", I64, nullable=False),                 # the kernel address that failed
    Column("cause", Text, nullable=False),
    Index("ix_vma_faults", "dump_id", "mm", "seq"),
)

ingest_errors = Table(
    "ingest_errors", metadata,
    Column("dump_id", Integer, ForeignKey("dumps.id", ondelete="CASCADE"), nullable=False),
    Column("message", Text, nullable=False),
)

# 0..511, written once by migration 0002: v_pages joins it to expand a run into its pages.
page_numbers = Table(
    "page_numbers", metadata,
    Column("n", Integer, primary_key=True, autoincrement=False),
)

# /proc/PID/smaps of each VMA, computed at ingest (indexer.walk.smaps; migration 0006). The
# figures are the kernel's own sums: bytes, and the pss* / swap_pss ones in 1/4096 bytes
# (bytes << PSS_SHIFT), so sums over VMAs round as the kernel's smaps_rollup does. `unknown`
# has bit i set when FIELDS[i] (indexer.walk.smaps) depends on what the dump lacks.
# SMAPS_FIGURES: the stored columns, as migration 0007 made them.
vma_smaps = Table(
    "vma_smaps", metadata,
    Column("dump_id", Integer, ForeignKey("dumps.id", ondelete="CASCADE"), nullable=False),
    Column("mm", I64, nullable=False),
    Column("vma_seq", Integer, nullable=False),             # vmas.seq
    Column("header", Text),                                 # show_map_vma's line; NULL: unknown
    Column("kernel_page_kb", Integer),
    Column("mmu_page_kb", Integer),
    Column("thp_eligible", SmallInteger),                   # NULL: unknown
    Column("protection_key", SmallInteger),                 # -1: the kernel prints none
    Column("vmflags", Text, nullable=False),                # "rd wr mr ... " as printed
    *[Column(f, I64, nullable=False) for f in SMAPS_FIGURES],
    Column("unknown", I64, nullable=False),
    Column("reason", Text),                                 # why some figure is unknown
    Index("ix_vma_smaps_pk", "dump_id", "mm", "vma_seq", unique=True),
)
smaps_layouts = Table(
    # The figure lines this dump's kernel prints, in order (struct mem_size_stats members):
    # space-separated names, '@' before the rollup-only ones.
    "smaps_layouts", metadata,
    Column("dump_id", Integer, ForeignKey("dumps.id", ondelete="CASCADE"), primary_key=True,
           autoincrement=False),
    Column("lines", Text, nullable=False),
)

# What `sys` and `ps` print beyond the walk (migration 0008). dump_info: one dump's system
# facts, one row a fact (`key` names it, docs/schema.md lists them; values as text).
dump_info = Table(
    "dump_info", metadata,
    Column("dump_id", Integer, ForeignKey("dumps.id", ondelete="CASCADE"), nullable=False),
    Column("key", String(64), nullable=False),
    Column("value", Text, nullable=False),
    Index("ix_dump_info_pk", "dump_id", "key", unique=True),
)
# task_info: per task what crash's ps options read of its task_struct (NULL: the kernel has
# no such member or the dump lost it). Times in the kernel's own units (nanoseconds).
task_info = Table(
    "task_info", metadata,
    Column("dump_id", Integer, ForeignKey("dumps.id", ondelete="CASCADE"), nullable=False),
    Column("task", I64, nullable=False),
    Column("parent", I64),                                  # task_struct.parent (ps -p/-c)
    Column("start_time", I64),                              # task_struct.start_time
    Column("utime", I64),
    Column("stime", I64),
    Column("last_run", I64),                                # sched_info.last_arrival
    Column("kstackp", I64),                                 # thread.sp (ps -s)
    Column("policy", Integer),
    Column("prio", Integer),
    Column("rlim", LargeBinary),                            # signal->rlim[] bytes (ps -r)
    Column("arg_start", I64),                               # mm's, user virtual (ps -a)
    Column("arg_end", I64),
    Column("env_start", I64),
    Column("env_end", I64),
    Column("args", LargeBinary),                            # user bytes arg_start..arg_end
    Column("env", LargeBinary),                             # user bytes env_start..env_end
    Column("args_error", Text),                             # why args/env are NULL
    Index("ix_task_info_pk", "dump_id", "task", unique=True),
)

BULK_TABLES = (tasks, mms, vmas, page_runs, page_table_faults, swap_devices,
               pointer_symbols, vma_faults, ingest_errors, kernel_maps, vma_smaps,
               smaps_layouts, dump_info, task_info)
