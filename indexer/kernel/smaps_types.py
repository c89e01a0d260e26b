"""The kernel types, enums and variables the smaps figures need (indexer.walk.smaps).

Kept apart from indexer.kernel.types's own lists so the smaps wants read as one set:
name -> anchor functions whose compile unit (via .debug_aranges) likely defines it.
"""
from __future__ import annotations

STRUCTS: dict[str, tuple[str, ...]] = {
    "page": ("__free_pages", "show_smap", "folio_mark_accessed"),
    "folio": ("folio_mark_accessed", "show_smap", "__folio_put"),
    "mem_size_stats": ("show_smap", "show_smaps_rollup"),
    "inode": ("show_smap", "iput"),
    "super_block": ("show_smap", "iput"),
    "address_space": ("show_smap", "iput"),
    "vm_operations_struct": ("show_smap", "vm_area_alloc"),
    "vm_special_mapping": ("special_mapping_name", "_install_special_mapping"),
    "anon_vma_name": ("show_smap", "anon_vma_name_alloc"),
    "dentry_operations": ("d_path", "dput"),
    "fs_struct": ("copy_fs_struct", "d_path"),
    # an overlayfs mapping's vm_file: f_path is the layer's, user_path the overlay's
    "backing_file": ("alloc_empty_backing_file", "backing_file_user_path"),
    "shmem_inode_info": ("shmem_swap_usage", "shmem_get_inode"),
    "shmem_sb_info": ("shmem_fill_super", "shmem_reconfigure", "shmem_get_inode"),
    "hugetlbfs_sb_info": ("hugetlbfs_fill_super", "hugetlb_file_setup"),
    "hstate": ("hugetlbfs_fill_super", "hugetlb_fault"),
    # a page-table page's descriptor: pt_share_count (hugetlb_pmd_shared)
    "ptdesc": ("huge_pmd_share", "huge_pmd_unshare", "__pte_alloc"),
    "cpuinfo_x86": ("get_cpu_cap", "identify_cpu"),
    "swap_info_struct": ("get_swap_device", "swap_info_get", "si_swapinfo"),
    # the swap table's layout (kernels without swap_info_struct.swap_map)
    "swap_cluster_info": ("swp_swapcount", "get_swap_device", "si_swapinfo"),
    "swap_table": ("swp_swapcount", "get_swap_device", "si_swapinfo"),
}
ENUMS: dict[str, tuple[str, ...]] = {
    "pageflags": ("folio_mark_accessed", "mark_page_accessed", "__free_pages"),
}
ENUMERATORS: dict[str, tuple[str, ...]] = {
    "TRANSPARENT_HUGEPAGE_FLAG": ("do_huge_pmd_anonymous_page", "hugepage_vma_check"),
}
# present when the kernel has PTE markers (non-swap entries smaps counts nothing for)
TYPEDEFS: dict[str, tuple[str, ...]] = {
    "pte_marker": ("do_swap_page", "change_pte_range", "zap_pte_range", "handle_mm_fault"),
}
VARIABLES: dict[str, tuple[str, ...]] = {
    "boot_cpu_data": ("get_cpu_cap", "identify_cpu"),
}
# printf formats of smaps lines whose width changed between kernels (not in DWARF): found
# by their fixed start in the vmlinux's .rodata
FORMATS: dict[str, bytes] = {
    "THPeligible": b"THPeligible:",
}
