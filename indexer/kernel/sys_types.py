"""The kernel types and variables `sys` needs (indexer.walk.system), merged into
indexer.kernel.types's wanted lists: name -> anchor functions whose compile unit likely
defines it."""
from __future__ import annotations

STRUCTS: dict[str, tuple[str, ...]] = {
    "uts_namespace": ("copy_utsname", "__do_sys_newuname", "override_release"),
    "new_utsname": ("__do_sys_newuname", "override_release", "copy_utsname"),
    "timekeeper": ("ktime_get_real_seconds", "ktime_get", "do_settimeofday64"),
    "tk_data": ("ktime_get_real_seconds", "ktime_get"),
    "taint_flag": ("print_tainted", "add_taint"),
    "module": ("find_module", "load_module", "__module_address"),
    "printk_ringbuffer": ("prb_read_valid", "prb_reserve", "vprintk_store"),
    "prb_desc_ring": ("prb_read_valid", "prb_reserve"),
    "prb_data_ring": ("prb_read_valid", "prb_reserve"),
    "prb_desc": ("prb_read_valid", "prb_reserve"),
    "prb_data_blk_lpos": ("prb_read_valid", "prb_reserve"),
    "printk_info": ("prb_read_valid", "prb_reserve", "vprintk_store"),
}
VARIABLES: dict[str, tuple[str, ...]] = {
    "taint_flags": ("print_tainted", "add_taint"),
}
