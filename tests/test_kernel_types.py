"""Type layouts and symbols from the fixture vmlinux files, checked against what the
kernel itself reported in VMCOREINFO (sizes, offsets, symbol addresses, build id)."""
from __future__ import annotations

import struct
import time

import pytest

from vmdex.indexer.dumpfile import open_dump
from vmdex.indexer.errors import KernelError
from vmdex.indexer.kernel.symtab import Symtab, build_id
from vmdex.indexer.kernel.types import (REQUIRED, WANTED_STRUCTS, WANTED_VARIABLES, KernelTypes,
                                  load_kernel_types)
from vmdex.indexer.kernel.vmcoreinfo import VmcoreInfo
from tests import fixturedata as fd

KERNELS = fd.kernels()


@pytest.fixture(scope="module", params=KERNELS)
def kernel(request):
    k = request.param
    t0 = time.perf_counter()
    kt, st = load_kernel_types(fd.vmlinux(k))
    elapsed = time.perf_counter() - t0
    with open_dump(fd.dump(k, "vmcore.mdf-c-d31")) as m:
        info = VmcoreInfo.parse(m.vmcoreinfo)
    return k, kt, st, info, elapsed


def test_fast_and_small(kernel):
    k, kt, st, _, elapsed = kernel
    print(f"{k}: load {elapsed:.3f}s (types {kt.extract_seconds:.3f}s), "
          f"json {len(kt.to_json())} bytes, CUs {kt.cus_parsed}")
    assert kt.extract_seconds < 3.0
    assert len(kt.cus_parsed) < 20
    assert len(kt.to_json()) < 1_000_000


def test_required_structs_present(kernel):
    _, kt, _, _, _ = kernel
    for name in REQUIRED:
        assert kt.sizeof(name) > 0, name


def test_layouts_match_vmcoreinfo(kernel):
    """Every SIZE()/OFFSET()/LENGTH() the kernel exported about a struct we extracted."""
    _, kt, _, info, _ = kernel
    checked = 0
    for key, val in info.entries.items():
        if key.startswith("SIZE(") and kt.sizeof(key[5:-1]) is not None:
            assert kt.sizeof(key[5:-1]) == int(val), key
            checked += 1
        elif key.startswith("OFFSET("):
            struct_name, _, path = key[7:-1].partition(".")
            if kt.has_struct(struct_name) or kt.sizeof(struct_name):
                assert kt.offsetof(struct_name, path) == int(val), key
                checked += 1
    assert checked >= 8   # pglist_data, list_head, atomic_long_t at least


def test_symbols_match_vmcoreinfo(kernel):
    k, _, st, info, _ = kernel
    kaslr = info.kerneloffset
    n = 0
    for key, val in info.entries.items():
        # SYMBOL(mem_section) is the pointer's value, not its address: image symbols only
        if (key.startswith("SYMBOL(") and st.address(key[7:-1]) is not None
                and int(val, 16) >= 0xFFFFFFFF80000000):
            assert st.address(key[7:-1]) + kaslr == int(val, 16), key
            n += 1
    assert n >= 3
    if info.build_id:
        assert build_id(fd.vmlinux(k)) == info.build_id


def test_anonymous_members_and_paths(kernel):
    _, kt, _, _, _ = kernel
    # vm_flags may sit in an anonymous union (6.3+); found by name either way
    assert kt.offsetof("vm_area_struct", "vm_flags") is not None
    assert kt.member_size("vm_area_struct", "vm_flags") == 8
    assert kt.offsetof("mm_struct", "pgd") is not None
    if kt.has_member("mm_struct", "mm_mt"):           # 6.1: maple tree
        assert not kt.has_member("mm_struct", "mmap")
        assert (kt.offsetof("mm_struct", "mm_mt.ma_root")
                == kt.offsetof("mm_struct", "mm_mt") + kt.offsetof("maple_tree", "ma_root"))
        assert kt.sizeof("maple_node") == 256
        assert kt.array_length("maple_range_64", "pivot") == 15
        assert kt.array_length("maple_range_64", "slot") == 16
        assert kt.enum_value("maple_leaf_64") == 1
        assert kt.enum_value("maple_arange_64") == 3
    else:                                               # 5.10: linked list
        assert kt.member_type("mm_struct", "mmap")["target"] == "struct vm_area_struct"
        assert kt.enum_value("maple_leaf_64") is None
    # spinlock_t's lock is two anonymous levels down
    assert kt.offsetof("mm_struct", "page_table_lock.rlock.raw_lock") is not None
    comm = kt.member_type("task_struct", "comm")
    assert comm["kind"] == "array" and comm["length"] == 16
    assert comm["elem"]["name"] == "char"
    idle = kt.member_type("rq", "idle")
    assert idle["kind"] == "ptr" and idle["target"] == "struct task_struct"
    gua = kt.member_type("mm_struct", "get_unmapped_area")
    assert gua["kind"] == "ptr" and gua["function"]


def test_enums(kernel):
    _, kt, _, _, _ = kernel
    assert [kt.enum_value(n) for n in
            ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SWAPENTS", "MM_SHMEMPAGES")] == [0, 1, 2, 3]
    assert kt.enum_value("PIDTYPE_PID") == 0
    assert kt.enum_value("PIDTYPE_MAX") == kt.array_length("task_struct", "pid_links")
    assert kt.enum_value("NO_SUCH_ENUMERATOR") is None


def test_variables_agree_with_symbol_sizes(kernel):
    _, kt, st, _, _ = kernel
    arrays = 0
    for name in WANTED_VARIABLES:
        vt = kt.variable_type(name)
        assert vt is not None, name
        size = _elf_symbol_size(st, name)
        if vt["kind"] == "array":
            arrays += 1
            assert kt.variable_array_length(name) * vt["elem"]["size"] == size, name
        elif vt["kind"] == "struct" and name != "init_mm":  # init_mm carries cpu_bitmap
            assert vt["size"] == size, name
    assert arrays >= 3                                   # swap_info, __per_cpu_offset, node_data
    sw = kt.variable_type("swap_info")
    assert sw["elem"]["kind"] == "ptr" and sw["elem"]["target"] == "struct swap_info_struct"


def _elf_symbol_size(st: Symtab, name: str) -> int:
    a = st.address(name)
    i = int((st.addr == a).nonzero()[0][0])
    for j in (st.addr == a).nonzero()[0]:
        if st.name(int(j)) == name:
            i = int(j)
    return int(st.size[i])


def test_missing_things_are_absent_not_errors(kernel):
    _, kt, _, _, _ = kernel
    assert kt.sizeof("no_such_struct") is None
    assert kt.offsetof("task_struct", "no_such_member") is None
    assert kt.offsetof("no_such_struct", "x") is None
    assert not kt.has_member("task_struct", "comm.nested")
    assert kt.member_type("task_struct", "nope") is None
    assert kt.array_length("task_struct", "pid") is None
    assert kt.variable_type("no_such_variable") is None
    assert kt.variable_array_length("init_task") is None


def test_json_roundtrip(kernel):
    _, kt, _, _, _ = kernel
    kt2 = KernelTypes.from_json(kt.to_json())
    for s in WANTED_STRUCTS:
        assert kt2.sizeof(s) == kt.sizeof(s)
    assert kt2.offsetof("vm_area_struct", "vm_flags") == kt.offsetof("vm_area_struct",
                                                                     "vm_flags")
    assert kt2.variable_array_length("swap_info") == kt.variable_array_length("swap_info")
    assert kt2.enum_value("MM_SHMEMPAGES") == 3


def test_symtab_symbolize(kernel):
    _, _, st, info, _ = kernel
    kaslr = info.kerneloffset
    ops = st.address("shmem_vm_ops")
    assert st.symbolize(ops + kaslr, kaslr) == "shmem_vm_ops"
    assert st.symbolize(ops + kaslr + 8, kaslr) == "shmem_vm_ops+8"
    fn = st.address("arch_get_unmapped_area_topdown")
    assert st.symbolize(fn + kaslr, kaslr) == "arch_get_unmapped_area_topdown"
    assert st.symbolize(fn + 5) == "arch_get_unmapped_area_topdown+5"  # offset 0 default
    assert st.symbolize(0, kaslr) is None
    assert st.symbolize(1, kaslr) is None
    assert st.symbolize(0xFFFF8BD841061B00, kaslr) is None             # direct map (heap)
    assert st.symbolize(0x7FFF0C7E0000, kaslr) is None                 # user space
    st2 = Symtab.from_bytes(st.to_bytes())
    assert st2.symbolize(ops + kaslr + 8, kaslr) == "shmem_vm_ops+8"
    assert st2.address("init_task") == st.address("init_task")


def test_not_elf(tmp_path):
    p = tmp_path / "vmlinux"
    p.write_bytes(b"this is not an ELF file at all" * 10)
    with pytest.raises(KernelError, match="not an ELF"):
        load_kernel_types(p)
    with pytest.raises(KernelError):
        load_kernel_types(tmp_path / "missing")


def test_elf_without_debug_info(tmp_path):
    p = tmp_path / "vmlinux"
    p.write_bytes(_tiny_elf())
    with pytest.raises(KernelError, match="^no debug info: "):
        load_kernel_types(p)


def _tiny_elf() -> bytes:
    """A valid ELF64 header with two sections (NULL, .shstrtab) and nothing else."""
    shstr = b"\0.shstrtab\0"
    shoff = 64 + len(shstr)
    hdr = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    hdr += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 2, 1)
    null = bytes(64)
    sh = struct.pack("<IIQQQQIIQQ", 1, 3, 0, 0, 64, len(shstr), 0, 0, 1, 0)
    return hdr + shstr + null + sh
