"""vmdex's own DWARF reader (fast path) checked against pyelftools, an independent reader.

pyelftools parses the same compile unit (found through .debug_aranges, relocations off);
every member offset and size of the structs the walk depends on must agree.
"""
from __future__ import annotations

import pytest
from elftools.elf.elffile import ELFFile

from vmdex.indexer.kernel.types import load_kernel_types
from tests import fixturedata as F

STRUCTS = ("task_struct", "mm_struct", "vm_area_struct", "file", "dentry")


def _pyelftools_layouts(vmlinux, anchor_addr):
    with open(vmlinux, "rb") as fh:
        dw = ELFFile(fh).get_dwarf_info(relocate_dwarf_sections=False)
        cu_off = dw.get_aranges().cu_offset_at_addr(anchor_addr)
        cu = dw.get_CU_at(cu_off)
        out = {}
        for die in cu.get_top_DIE().iter_children():
            name = die.attributes.get("DW_AT_name")
            if die.tag != "DW_TAG_structure_type" or name is None:
                continue
            name = name.value.decode()
            if name not in STRUCTS or "DW_AT_declaration" in die.attributes or name in out:
                continue
            members = {}
            for m in die.iter_children():
                if m.tag == "DW_TAG_member" and "DW_AT_name" in m.attributes and \
                        "DW_AT_data_member_location" in m.attributes and \
                        "DW_AT_bit_size" not in m.attributes:  # bitfields have no byte offset
                    members[m.attributes["DW_AT_name"].value.decode()] = \
                        m.attributes["DW_AT_data_member_location"].value
            out[name] = (die.attributes["DW_AT_byte_size"].value, members)
        return out


@pytest.mark.parametrize("kernel", F.kernels())
def test_layouts_agree_with_pyelftools(kernel):
    vmlinux = F.vmlinux(kernel)
    types, symtab = load_kernel_types(vmlinux)
    ref = _pyelftools_layouts(vmlinux, symtab.address("dup_mm") or symtab.address("copy_process"))
    assert {"task_struct", "mm_struct", "vm_area_struct"} <= set(ref)
    for struct, (size, members) in ref.items():
        assert types.sizeof(struct) == size, struct
        for name, off in members.items():
            assert types.offsetof(struct, name) == off, f"{struct}.{name}"
