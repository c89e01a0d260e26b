"""The architecture seam (indexer.arch): which machine a dump is of, and the arm64 facts that
do not need a dump (address translation, table format, swap entries) checked against
crash 9.0.2's arm64.c. Whole arm64 dumps are checked against crash's oracle by
tests/test_matrix.py (arm64-* rows of tests/kernels/kernels.tsv)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from vmdex.indexer.arch import UnsupportedArch, detect, machine_of
from vmdex.indexer.arch.arm64 import Arm64
from vmdex.indexer.arch.x86_64 import X86_64
from vmdex.indexer.kernel.vmcoreinfo import VmcoreInfo
from tests import fixturedata as F


class _Dump:
    def __init__(self, machine=None, path="dump"):
        self.machine, self.path = machine, path


ARM64_INFO = VmcoreInfo.parse("\n".join([
    "OSRELEASE=6.12.118+deb13-cloud-arm64", "PAGESIZE=4096",
    "NUMBER(VA_BITS)=52", "NUMBER(TCR_EL1_T1SZ)=0x10", "NUMBER(MAX_PHYSMEM_BITS)=48",
    "NUMBER(PHYS_OFFSET)=0xfff1000040000000", "NUMBER(kimage_voffset)=0xffffd0b283800000"]))
X86_INFO = VmcoreInfo.parse("OSRELEASE=6.1.0-56-amd64\nNUMBER(phys_base)=-1073741824\n")


def test_detect_by_header_then_vmcoreinfo():
    assert isinstance(detect(_Dump("x86_64"), X86_INFO), X86_64)
    assert isinstance(detect(_Dump("aarch64"), ARM64_INFO), Arm64)
    # QEMU's kdump header says "Unknown": VMCOREINFO decides
    assert machine_of(_Dump("Unknown"), ARM64_INFO) == "arm64"
    assert machine_of(_Dump("Unknown"), X86_INFO) == "x86_64"


def test_unknown_machine_is_one_line():
    with pytest.raises(UnsupportedArch) as e:
        detect(_Dump("ppc64le", "/d/vmcore"), VmcoreInfo.parse("OSRELEASE=6.1\n"))
    assert str(e.value) == ("/d/vmcore: a dump of machine ppc64le: vmdex reads x86_64 and "
                            "arm64 dumps only")


def test_arm64_geometry_and_linear_map():
    a = detect(_Dump("aarch64"), ARM64_INFO)
    assert (a.levels, a.user_top, a.page_offset) == (4, 1 << 48, 0xFFF0000000000000)
    assert a.shifts == [39, 30, 21, 12]
    # the 52-bit-VA kernel on a 48-bit CPU: PHYS_OFFSET is "negative", the sum wraps
    assert a.kvtop_linear(0xFFFF000003277580) == 0x43277580
    assert a.ptov(0x43277000) == 0xFFFF000003277000
    assert a.kvtop_linear(0xFFFF800080000000) is None            # vmalloc: table walk
    a.kimage = (0xFFFFD0B2C3A00000, 0xFFFFD0B2C5400000)
    assert a.kvtop_linear(0xFFFFD0B2C52A4000) == 0xFFFFD0B2C52A4000 - 0xFFFFD0B283800000


def test_arm64_table_format_as_crash_reads_it():
    a = detect(_Dump("aarch64"), ARM64_INFO)
    e = np.array([0x0000000041234003, 0x0040000041200701, 0x00000000deadbee2], np.uint64)
    huge, down = a.classify(e, 2)                 # PMD level: 01 = section, rest = table
    assert huge.tolist() == [False, True, False] and down.tolist() == [True, False, True]
    huge, down = a.classify(e, 4)                 # the 4-level pgd: always a table
    assert not huge.any() and down.all()
    assert a.leaf_pa(e[1:2], 2).tolist() == [0x41200000]
    assert a.pte_present(np.array([0x43, 0x42], np.uint64)).tolist() == [True, False]


@pytest.mark.parametrize("release,pte,want", [
    # crash arm64.c arm64_init(POST_GDB): >= 6.10: type bits 6-10, offset from bit 12
    ("6.12.118+deb13-cloud-arm64", (7 << 6) | (0x123 << 12), (7, 0x123)),
    # >= 5.19: type bits 3-7, offset from bit 8
    ("6.1.0-57-arm64", (3 << 3) | (0x456 << 8), (3, 0x456)),
    # >= 4.0: type bits 2-7, offset from bit 8
    ("5.10.0-32-arm64", (5 << 2) | (0x789 << 8), (5, 0x789)),
])
def test_arm64_swap_entries(release, pte, want):
    a = detect(_Dump("aarch64"), ARM64_INFO)
    a.release = tuple(int(x) for x in release.split("-")[0].split("+")[0].split("."))
    typ, off = a.swap_type_offset(np.array([pte], np.uint64))
    assert (int(typ[0]), int(off[0])) == want


def test_lpa2_and_other_page_sizes_refused():
    lpa2 = VmcoreInfo.parse("PAGESIZE=4096\nNUMBER(VA_BITS)=52\nNUMBER(TCR_EL1_T1SZ)=0xc\n"
                            "NUMBER(PHYS_OFFSET)=0x40000000\nNUMBER(kimage_voffset)=0x1\n")
    from vmdex.indexer.errors import DumpError

    with pytest.raises(DumpError, match="LPA2"):
        detect(_Dump("aarch64"), lpa2)


def test_no_import_circles():
    """indexer never imports query; store and ingest do not import each other."""
    code = ("import sys, vmdex.indexer.ingest, vmdex.indexer.store; "
            "bad = [m for m in sys.modules if m.startswith('vmdex.query')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
    for path, banned in (("indexer/store.py", "from vmdex.indexer.ingest"),
                         ("indexer/image.py", "from vmdex.indexer.ingest"),
                         ("query/cli.py", "from vmdex.query.main")):
        assert banned not in open(path).read(), (path, banned)


def test_arm64_without_its_vmcoreinfo_numbers_is_one_line():
    from vmdex.indexer.errors import DumpError

    info = VmcoreInfo.parse("PAGESIZE=4096\nNUMBER(VA_BITS)=48\nNUMBER(TCR_EL1_T1SZ)=0x10\n"
                            "NUMBER(kimage_voffset)=0xffff\n")
    with pytest.raises(DumpError) as e:
        detect(_Dump("aarch64", "/d/vmcore"), info)
    assert str(e.value) == ("/d/vmcore: arm64 dump without NUMBER(PHYS_OFFSET) in VMCOREINFO: "
                            "cannot place the kernel")


def test_vmcoreinfo_numbers_hex_or_decimal():
    info = VmcoreInfo.parse("NUMBER(a)=0x10\nNUMBER(b)=-129\nNUMBER(c)=27\nNUMBER(d)=-0x10\n")
    assert [info.number(k) for k in "abcd"] == [16, -129, 27, -16]


@pytest.mark.parametrize("kernel", F.kernels())
def test_x86_linear_ranges_end_where_the_kernel_says(kernel):
    """Only the direct map (up to vmalloc_base) and the kernel image (up to _end) translate
    without the tables: vmalloc'd memory (per-CPU chunks, stacks) and modules above the
    image are read through the kernel's page tables, on a real dump."""
    from vmdex.indexer.arch.memory import KernelMemory
    from vmdex.indexer.arch.pagewalk import translate
    from vmdex.indexer.dumpfile import open_dump
    from vmdex.indexer.kernel.types import load_kernel_types
    from vmdex.indexer.walk.kernel import Kernel

    types, symtab = load_kernel_types(F.vmlinux(kernel))
    with open_dump(F.dump(kernel, F.dump_variants(kernel)[0])) as phys:
        info = VmcoreInfo.parse(phys.vmcoreinfo)
        arch = detect(phys, info)
        if arch.name != "x86_64":
            pytest.skip("an x86_64 rule")
        k = Kernel(KernelMemory(phys, arch), types, symtab.address, info.kerneloffset or 0)
        arch.setup(k, info)
        vmalloc = k.ptr(k.sym("vmalloc_base"))
        assert arch.vmalloc_start == vmalloc and arch.image_end == k.sym("_end")
        assert arch.kvtop_linear(arch.page_offset + 0x1000) == 0x1000
        assert arch.kvtop_linear(vmalloc) is None and arch.kvtop_linear(arch.image_end) is None
        # kthreadd's stack is vmalloc'd (VMAP_STACK): read through the tables, as mapped
        init = k.sym("init_task")
        link = k.off("task_struct", "tasks")
        kthreadd = k.ptr(init + link) - link
        stack = k.ptr(kthreadd + k.off("task_struct", "stack"))
        assert stack >= vmalloc and arch.kvtop_linear(stack) is None
        pa = translate(phys, arch, arch.kernel_pgd_pa, stack)
        assert pa is not None and k.mem.read(stack, 64) == phys.read(pa, 64)
        assert k.mem.read(init, 64) == phys.read(arch.kvtop_linear(init), 64)
