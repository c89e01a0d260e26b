"""Loaded modules' symbols as crash names them (indexer.walk.modules), on real dumps.

* every fixture's module list reads without an error, and each module symbol looks itself up;
* folders whose workloads live on a module filesystem (make-dumps --rootfs: `vm -v` prints
  `<ext4_file_vm_ops>` / `<xfs_file_vm_ops>` / `<btrfs_file_vm_ops>`) answer those oracle
  files byte for byte (the folders are found through $VMDEX_FIXTURES like any fixture);
* the real module list and symbol tables of a real dump, with counts, pointers and symtab
  bytes overwritten (hypothesis), give module symbols or one ingest_errors line, never a
  traceback or a hang.
"""
from __future__ import annotations

from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import fixturedata as F
from tests.conftest import primary_variant
from tests.test_properties import within

K61 = "linux-6.1.0-56-amd64"       # bookworm: core_layout; modules qemu_fw_cfg, zsmalloc, zram
U64 = (1 << 64) - 1


@contextmanager
def real_kernel(kernel: str):
    """The Kernel the ingest builds over a fixture's primary dump."""
    from vmdex.indexer.arch import detect
    from vmdex.indexer.arch.memory import KernelMemory
    from vmdex.indexer.dumpfile import open_dump
    from vmdex.indexer.kernel.types import load_kernel_types
    from vmdex.indexer.kernel.vmcoreinfo import VmcoreInfo
    from vmdex.indexer.walk.kernel import Kernel

    types, symtab = load_kernel_types(F.vmlinux(kernel))
    with open_dump(F.dump(kernel, primary_variant(kernel))) as phys:
        info = VmcoreInfo.parse(phys.vmcoreinfo)
        arch = detect(phys, info)
        k = Kernel(KernelMemory(phys, arch), types, symtab.address, info.kerneloffset or 0)
        arch.setup(k, info)
        yield k


def module_folders() -> list[str]:
    """Fixture folders whose oracle prints a module's symbol in `vm -v`."""
    return [k for k in F.kernels()
            if any("_file_vm_ops>" in (F.oracle_dir(k) / f).read_text(errors="replace")
                   for f, cmd, _ in F.oracle_commands(k) if cmd.startswith("vm ")
                   and (F.oracle_dir(k) / f).is_file() and not f.endswith(".gz"))]


@pytest.mark.parametrize("kernel", F.kernels())
def test_module_list_reads(kernel):
    from vmdex.indexer.walk.modules import read_modules

    with real_kernel(kernel) as k:
        errors: list[str] = []
        ms = read_modules(k, errors)
        crash_reads_modules = k.has("module", "num_gpl_syms")
    assert errors == []
    if not crash_reads_modules:     # 7.x: crash 9.0.2 starts only with --no_modules
        assert ms is None
        return
    assert ms is not None and ms.mods
    for m in ms.mods:
        assert m.name and m.symbols
        for value, name in m.symbols:
            if name.startswith("_MODULE_"):
                continue
            got = ms.lookup(value)
            assert got is not None and got[1] == 0, (m.name, name, hex(value))


@pytest.mark.parametrize("kernel", module_folders())
def test_module_symbols_in_vm_v(kernel, oracle_index):
    from tests.test_oracle import run_case

    db, name = oracle_index[kernel]
    files = [(f, cmd) for f, cmd, _ in F.oracle_commands(kernel) if cmd.startswith("vm ")
             and "_file_vm_ops>" in (F.oracle_dir(kernel) / f).read_text(errors="replace")]
    assert files
    for f, cmd in files:
        run_case(db, name, kernel, f, cmd)


# --- damaged module memory ------------------------------------------------------------------

def patched(k, patches: dict[int, bytes]):
    """The same kernel, its memory read with `patches` (va -> bytes) laid over the dump's."""
    from vmdex.indexer.arch.memory import KernelMemory
    from vmdex.indexer.walk.kernel import Kernel

    class Patched(KernelMemory):
        def read(self, va: int, size: int) -> bytes:
            out = bytearray(super().read(va, size))
            for a, data in patches.items():
                lo, hi = max(a, va), min(a + len(data), va + size)
                if lo < hi:
                    out[lo - va:hi - va] = data[lo - a:hi - a]
            return bytes(out)

    return Kernel(Patched(k.mem.phys, k.mem.arch), k.types, k._symbol_address,
                  k.kaslr_offset)


@pytest.fixture(scope="module")
def k61():
    if K61 not in F.kernels():
        pytest.skip(f"fixture {K61} not available")
    from vmdex.indexer.walk.modules import module_addresses

    with real_kernel(K61) as k:
        yield k, module_addresses(k)


FIELDS = ["list.next", "name", "core_layout.base", "core_layout.size", "init_layout.size",
          "core_kallsyms.num_symtab", "core_kallsyms.symtab", "core_kallsyms.strtab",
          "num_syms", "syms", "num_gpl_syms", "gpl_syms"]


def check_bounded(k) -> None:
    from vmdex.indexer.walk.modules import read_modules

    errors: list[str] = []
    with within(60):
        ms = read_modules(k, errors)
        if ms is None:
            assert len(errors) <= 1
        else:
            assert errors == []
            for m in ms.mods:          # the lookup over whatever was read terminates
                for base, size in m.regions:
                    for a in (base, base + size // 2, base + size):
                        ms.symbolize(a & U64)
    assert all(isinstance(e, str) and "\n" not in e for e in errors)


SETTINGS = dict(deadline=None, max_examples=60, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@settings(**SETTINGS)
@given(data=st.data(), field=st.sampled_from(FIELDS),
       value=st.one_of(st.integers(0, U64), st.integers(0, 1 << 20), st.just(0),
                       st.integers(-4096, 4096)))
def test_module_fields_overwritten(k61, data, field, value):
    k, mods = k61
    mod = data.draw(st.sampled_from(mods))
    at = mod + k.off("module", field)
    size = k.member_size("module", field)
    check_bounded(patched(k, {at: (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")}))


@settings(**SETTINGS)
@given(data=st.data(), junk=st.binary(min_size=1, max_size=64), where=st.floats(0, 1))
def test_module_symtab_bytes_mutated(k61, data, junk, where):
    k, mods = k61
    mod = data.draw(st.sampled_from(mods))
    view = k.view("module", mod)
    n, symtab = view.u("core_kallsyms.num_symtab"), view.ptr("core_kallsyms.symtab")
    strtab = view.ptr("core_kallsyms.strtab")
    target = data.draw(st.sampled_from([symtab, strtab]))
    span = n * k.sizeof("elf64_sym") if target == symtab else 4096
    check_bounded(patched(k, {target + int(where * span): junk}))


def test_module_list_loop_is_one_line(k61):
    k, mods = k61
    from vmdex.indexer.walk.modules import read_modules

    last = mods[-1] + k.off("module", "list")
    first = mods[0] + k.off("module", "list")
    errors: list[str] = []
    assert read_modules(patched(k, {last: first.to_bytes(8, "little")}), errors) is None
    assert len(errors) == 1 and "modules list" in errors[0]


def test_module_symtab_count_beyond_memory_is_one_line(k61):
    k, mods = k61
    from vmdex.indexer.walk.modules import read_modules

    at = mods[0] + k.off("module", "core_kallsyms.num_symtab")
    errors: list[str] = []
    assert read_modules(patched(k, {at: (1 << 31).to_bytes(4, "little")}), errors) is None
    assert len(errors) == 1 and "outside the module's memory" in errors[0]
