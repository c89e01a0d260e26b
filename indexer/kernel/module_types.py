"""The kernel types the loaded-module walk needs (indexer.walk.modules), merged into
indexer.kernel.types's wanted lists: name -> anchor functions whose compile unit likely
defines it. struct module's own layout comes from sys_types; its embedded mod_kallsyms,
module_memory / module_layout come with it, but the types only pointed at (Elf64_Sym,
kernel_symbol) must be asked for."""
from __future__ import annotations

STRUCTS: dict[str, tuple[str, ...]] = {
    "module": ("find_module", "load_module", "__module_address"),
    "elf64_sym": ("load_module", "module_address_lookup", "find_kallsyms_symbol_value"),
    "kernel_symbol": ("load_module", "find_symbol", "__symbol_get"),
}
