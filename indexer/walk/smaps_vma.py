"""The per-VMA lines of /proc/PID/smaps that do not depend on pages: the header line
(show_map_vma), KernelPageSize/MMUPageSize, THPeligible, ProtectionKey and VmFlags, and
which figure lines this kernel prints (its struct mem_size_stats members).

Every name and bit comes from the vmlinux: the VmFlags names and vm_flags bits from
show_smap_vma_flags()'s own table (indexer.walk.smaps.vm_mnemonics), struct layouts from
DWARF. Anything that cannot be decided is None: the query says it is unknown.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from vmdex.indexer.errors import MemoryReadError, WalkError

MMF_DISABLE_THP = 24          # mm->flags bit set by prctl(PR_SET_THP_DISABLE), uapi-stable
MAX_PATH = 4096


def thp_line_width(k) -> int:
    """THPeligible's print width: from the kernel's own format (`%d`, or `%8u` since the
    per-order THP settings); for a kernel row cached without it, by the function those
    kernels have (absent also from kernels built without THP)."""
    fmt = k.types.format("THPeligible")
    if fmt:
        m = re.search(r"%(\d*)[du]", fmt)
        return int(m[1]) if m and m[1] else 0
    return 8 if k.sym("__thp_vma_allowable_orders") is not None else 0


@dataclass
class VmaText:
    header: str | None            # None: the path or name could not be read
    kernel_page_kb: int | None
    mmu_page_kb: int | None
    thp_eligible: int | None
    pkey: int | None              # -1: this kernel prints no ProtectionKey line
    vmflags: str
    shmem_swap: int | None = 0    # bytes smap_gather_stats() adds to Swap (shmem files)


def line_layout(k) -> str:
    """The figure lines this kernel prints, from its struct mem_size_stats: a space-separated
    list of line keys (query.smaps prints them)."""
    t = k.types
    lines = ["Rss", "Pss"]
    if t.has_member("mem_size_stats", "pss_dirty"):
        lines.append("Pss_Dirty")
    if t.has_member("mem_size_stats", "pss_anon"):
        lines.append("@Pss_Anon")      # @: rollup only
        lines.append("@Pss_File")
        lines.append("@Pss_Shmem")
    lines += ["Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty", "Referenced",
              "Anonymous"]
    if t.has_member("mem_size_stats", "ksm"):
        lines.append("KSM")
    lines += ["LazyFree", "AnonHugePages", "ShmemPmdMapped"]
    if t.has_member("mem_size_stats", "file_thp"):
        lines.append("FilePmdMapped")
    lines += ["Shared_Hugetlb", "Private_Hugetlb", "Swap", "SwapPss", "Locked"]
    if thp_line_width(k):
        lines.append(f"%THPeligible={thp_line_width(k)}")
    return " ".join(lines)


class VmaTexts:
    """Reads what the header lines need, caching per file and per mm."""

    def __init__(self, k, mnemonics: list[str], vm: dict, arch):
        self.k, self.mn, self.vm = k, mnemonics, vm
        self._names: dict[int, str] = {}     # vm_flags -> its VmFlags mnemonics
        self.sym_special = k.sym("special_mapping_name")
        self.sym_simple_dname = k.sym("simple_dname")
        self.backing_user_path = k.off("backing_file", "user_path") \
            if k.has("backing_file", "user_path") else None
        self.shmem_aops = k.sym("shmem_aops")
        self.thp_flags = None
        sym = k.sym("transparent_hugepage_flags")
        self.has_thp = sym is not None
        # the enum bits THPeligible reads, looked up once (None: the kernel lacks one)
        self.thp_bit = {n: k.types.enum_value(n) for n in (
            "TRANSPARENT_HUGEPAGE_FLAG", "TRANSPARENT_HUGEPAGE_REQ_MADV_FLAG",
            "TRANSPARENT_HUGEPAGE_NEVER_DAX", "TRANSPARENT_HUGEPAGE_UNSUPPORTED")}
        self._paths: dict[tuple, str | None] = {}   # (mnt, dentry, root) -> d_path()
        self._files: dict[tuple, tuple] = {}     # (struct file, root) -> _file_facts()
        self._shmem: dict[int, bool | None] = {}    # struct file -> _is_shmem()
        if sym is not None:
            try:
                self.thp_flags = k.ptr(sym)
            except (MemoryReadError, WalkError):
                pass
        self.new_thp_rule = k.sym("hugepage_vma_check") is not None
        # Per-order THP settings (mTHP kernels: __thp_vma_allowable_orders)
        self.orders = None
        if k.sym("__thp_vma_allowable_orders") is not None:
            self.new_thp_rule = True
            try:
                self.orders = tuple(k.ptr(k.need_sym(n)) for n in (
                    "huge_anon_orders_always", "huge_anon_orders_madvise",
                    "huge_anon_orders_inherit"))
            except (MemoryReadError, WalkError):
                self.orders = ()
        # ProtectionKey is printed when the kernel was built with protection keys and the
        # machine enabled them (arch_pkeys_enabled())
        has_pkeys = k.sym("arch_set_user_pkey_access") is not None
        self.page_shift = arch.page_shift
        self.hpage_pmd = 1 << arch.shifts[-2]        # HPAGE_PMD_SIZE: a PMD leaf
        self.pkeys = arch.pkeys_enabled(k) if has_pkeys else False

    # --- paths ---------------------------------------------------------------------------
    def _name(self, dentry: int) -> bytes:
        k = self.k
        q = dentry + k.off("dentry", "d_name")
        n = k.mem.u32(q + k.off("qstr", "len"))
        return k.mem.read(k.ptr(q + k.off("qstr", "name")), n) if n else b""

    def user_path(self, file: int) -> tuple[int, int, bool]:
        """(mnt, dentry, is a backing file) the kernel shows for a mapped file: file_user_path().

        Where struct backing_file has user_path, an overlayfs mapping's vm_file is a backing
        file whose f_path is the layer's file and user_path the overlay's, which
        /proc/PID/maps prints (with the overlay inode's dev and ino). Such a file has
        FMODE_BACKING in f_mode, a #define DWARF lacks: it has been bit 25 and then bit 24,
        and neither bit is set on an ordinary file in the layout of the other except bit 25
        (FMODE_NONOTIFY_HSM) in the newer one; the user_path read past such a struct file
        must name a dentry of the mount it names, or it is not taken."""
        k = self.k
        fp = k.off("file", "f_path")
        mnt = k.ptr(file + fp + k.off("path", "mnt"))
        dentry = k.ptr(file + fp + k.off("path", "dentry"))
        if self.backing_user_path is None:
            return mnt, dentry, False
        if not k.mem.u32(file + k.off("file", "f_mode")) & (3 << 24):
            return mnt, dentry, False
        up = file + self.backing_user_path
        try:
            umnt = k.ptr(up + k.off("path", "mnt"))
            udentry = k.ptr(up + k.off("path", "dentry"))
            if umnt and udentry and k.ptr(udentry + k.off("dentry", "d_sb")) == \
                    k.ptr(umnt + k.off("vfsmount", "mnt_sb")) != 0:
                return umnt, udentry, True
        except (MemoryReadError, WalkError):
            pass
        return mnt, dentry, False

    def d_path(self, file: int, root: tuple[int, int] | None) -> str | None:
        """The kernel's d_path() of a struct file's user path, relative to the reader's root
        (dentry, mnt); a path that never meets it is named from the global root of its
        mount tree."""
        mnt, dentry, _ = self.user_path(file)
        # many files (every process's libc) share one path: read each dentry chain once
        key = (mnt, dentry, root)
        if key not in self._paths:
            self._paths[key] = self._d_path(mnt, dentry, root)
        return self._paths[key]

    def _d_path(self, mnt: int, dentry: int, root: tuple[int, int] | None) -> str | None:
        k = self.k
        parent_off = k.off("dentry", "d_parent")
        mnt_root_off = k.off("vfsmount", "mnt_root")
        d_op = k.ptr(dentry + k.off("dentry", "d_op")) if k.has("dentry", "d_op") else 0
        # d_dname names the file unless it is the root of its own mount
        if d_op and (k.ptr(dentry + parent_off) != dentry or
                     dentry != k.ptr(mnt + mnt_root_off)):
            dname = k.ptr(d_op + k.off("dentry_operations", "d_dname"))
            if dname:
                if dname != self.sym_simple_dname:
                    return None
                return "/" + self._name(dentry).decode("utf-8", "surrogateescape") + \
                    " (deleted)"
        mnt_in_mount = k.off("mount", "mnt")
        deleted = False
        if k.has("dentry", "d_hash"):
            pprev = k.ptr(dentry + k.off("dentry", "d_hash") + 8)
            deleted = pprev == 0 and k.ptr(dentry + parent_off) != dentry
        parts: list[bytes] = []
        for _ in range(MAX_PATH):
            if root is not None and (dentry, mnt) == root:
                break
            if dentry == k.ptr(mnt + mnt_root_off):
                mount = mnt - mnt_in_mount
                parent = k.ptr(mount + k.off("mount", "mnt_parent"))
                if parent == mount:
                    break
                dentry = k.ptr(mount + k.off("mount", "mnt_mountpoint"))
                mnt = parent + mnt_in_mount
                continue
            up = k.ptr(dentry + parent_off)
            if up == dentry:
                break
            parts.append(self._name(dentry))
            dentry = up
        path = "/" + "/".join(p.decode("utf-8", "surrogateescape") for p in reversed(parts))
        path = path.replace("\n", "\\012")
        return path + (" (deleted)" if deleted else "")

    def task_root(self, task: int) -> tuple[int, int] | None:
        k = self.k
        try:
            fs = k.ptr(task + k.off("task_struct", "fs"))
            if not fs:
                return None
            r = fs + k.off("fs_struct", "root")
            return (k.ptr(r + k.off("path", "dentry")), k.ptr(r + k.off("path", "mnt")))
        except (MemoryReadError, WalkError):
            return None

    # --- one VMA ---------------------------------------------------------------------------
    def text(self, mm_raw: bytes, vma, root) -> VmaText:
        k = self.k
        raw = vma.raw

        def field(struct_raw: bytes, struct: str, path: str) -> int:
            o = k.off(struct, path)
            return int.from_bytes(struct_raw[o:o + 8], "little")

        flags = vma.flags
        vm = self.vm
        perms = ("r" if flags & vm["rd"] else "-") + ("w" if flags & vm["wr"] else "-") + \
                ("x" if flags & vm["ex"] else "-") + ("s" if flags & vm["ms"] else "p")
        dev = ino = pgoff = 0
        name: str | None = None
        header_ok = True
        vm_ops = field(raw, "vm_area_struct", "vm_ops")
        inode = 0
        try:
            if vma.file:
                key = (vma.file, root)     # a library's 4-5 VMAs share one struct file
                facts = self._files.get(key)
                if facts is None:
                    facts = self._files[key] = self._file_facts(vma.file, root)
                inode, dev, ino, name, header_ok = facts
                pgoff = vma.pgoff << self.page_shift
            else:
                if vm_ops:
                    fn = k.ptr(vm_ops + k.off("vm_operations_struct", "name")) \
                        if k.has("vm_operations_struct", "name") else 0
                    if fn:
                        if fn != self.sym_special:
                            header_ok = False
                        else:
                            sm = field(raw, "vm_area_struct", "vm_private_data")
                            name = k.mem.cstring(k.ptr(sm + k.off("vm_special_mapping",
                                                                  "name")), 256).decode()
                if name is None and header_ok:
                    brk = field(mm_raw, "mm_struct", "brk")
                    start_brk = field(mm_raw, "mm_struct", "start_brk")
                    start_stack = field(mm_raw, "mm_struct", "start_stack")
                    if vma.start <= brk and vma.end >= start_brk:
                        name = "[heap]"
                    elif vma.start <= start_stack <= vma.end:
                        name = "[stack]"
                    elif k.has("vm_area_struct", "anon_name"):
                        an = field(raw, "vm_area_struct", "anon_name")
                        if an:
                            s = k.mem.cstring(an + k.off("anon_vma_name", "name"), 256)
                            name = "[anon:" + s.decode("utf-8", "surrogateescape") + "]"
        except (MemoryReadError, WalkError, UnicodeDecodeError):
            header_ok = False
        prefix = (f"{vma.start:08x}-{vma.end:08x} {perms} {pgoff:08x} "
                  f"{dev >> 20:02x}:{dev & 0xFFFFF:02x} {ino} ")
        if name is not None:
            prefix = prefix.ljust(72) + " " + name
        header = prefix if header_ok else None
        kps = self._kernel_page_kb(vma, vm_ops, inode)
        mm_flags = field(mm_raw, "mm_struct", "flags")
        thp = self._thp_eligible(vma, vm_ops, mm_flags)
        pkey = None
        if self.pkeys is True:
            mask = vm.get("pkey", 0)
            low = (mask & -mask).bit_length() - 1 if mask else 0
            pkey = (flags & mask) >> low if mask else 0
        names = self._names.get(flags)
        if names is None:   # VmFlags: a few distinct flag words over thousands of VMAs
            names = self._names[flags] = "".join(m + " " for i, m in enumerate(self.mn)
                                                 if m and flags >> i & 1)
        return VmaText(header, kps, kps, thp, pkey if self.pkeys is not False else -1, names,
                       self._shmem_swap(vma, inode))

    def _file_facts(self, file: int, root) -> tuple[int, int, int, str | None, bool]:
        """(inode, dev, ino, path, all read) of a mapped struct file, for the header line;
        what could be read before a failure stays (KernelPageSize reads the inode)."""
        k = self.k
        inode = dev = ino = 0
        try:
            inode = k.ptr(file + k.off("file", "f_inode"))
            # dev and ino of file_user_inode(): the overlay's for a backing file
            _, udentry, backing = self.user_path(file)
            shown = k.ptr(udentry + k.off("dentry", "d_inode")) if backing else inode
            sb = k.ptr(shown + k.off("inode", "i_sb"))
            dev = k.mem.u32(sb + k.off("super_block", "s_dev"))
            ino = k.ptr(shown + k.off("inode", "i_ino"))
            name = self.d_path(file, root)
        except (MemoryReadError, WalkError, UnicodeDecodeError):
            return inode, dev, ino, None, False
        return inode, dev, ino, name, name is not None

    def _shmem_swap(self, vma, inode: int) -> int | None:
        """shmem_swap_usage() as smap_gather_stats() adds it; None when the kernel would
        look the swapped pages up one by one (a partial mapping of a swapped file)."""
        k = self.k
        shmem = self._is_shmem(vma)
        if not shmem:
            return 0 if shmem is False else None
        try:
            info = inode - k.off("shmem_inode_info", "vfs_inode")
            swapped = k.ptr(info + k.off("shmem_inode_info", "swapped"))
            if not swapped:
                return 0
            size = k.ptr(inode + k.off("inode", "i_size"))
        except (MemoryReadError, WalkError):
            return None
        whole = vma.pgoff == 0 and vma.end - vma.start >= size
        vm = self.vm
        if whole and (vma.flags & vm.get("sh", 0) or not vma.flags & vm["wr"]):
            return swapped << self.page_shift
        return None

    def _kernel_page_kb(self, vma, vm_ops: int, inode: int) -> int | None:
        """vma_kernel_pagesize(): a hugetlb VMA's hstate page size, else the base page."""
        k = self.k
        if not vma.flags & self.vm.get("ht", 0):
            return 1 << (self.page_shift - 10)
        try:
            sb = k.ptr(inode + k.off("inode", "i_sb"))
            info = k.ptr(sb + k.off("super_block", "s_fs_info"))
            h = k.ptr(info + k.off("hugetlbfs_sb_info", "hstate"))
            order = k.mem.u32(h + k.off("hstate", "order"))
            return 1 << (self.page_shift - 10 + order)
        except (MemoryReadError, WalkError):
            return None

    def _is_shmem(self, vma) -> bool | None:
        if not vma.file:
            return False
        if vma.file in self._shmem:
            return self._shmem[vma.file]
        k = self.k
        try:
            mapping = k.ptr(vma.file + k.off("file", "f_mapping"))
            aops = k.ptr(mapping + k.off("address_space", "a_ops"))
            shmem = self.shmem_aops is not None and aops == self.shmem_aops
        except (MemoryReadError, WalkError):
            shmem = None
        self._shmem[vma.file] = shmem
        return shmem

    def _thp_eligible(self, vma, vm_ops: int, mm_flags: int) -> int | None:
        """What show_smap() prints for THPeligible: transparent_hugepage_enabled() (oldest
        kernels), hugepage_vma_check(smaps) (kernels that have it) or, on kernels with
        per-order settings, whether thp_vma_allowable_orders(TVA_SMAPS, THP_ORDERS_ALL)
        leaves any order."""
        vm, flags = self.vm, vma.flags
        f = self.thp_flags
        bit = self.thp_bit
        if not self.has_thp:
            return 0            # built without THP (PREEMPT_RT): the check is a stub
        if f is None or bit["TRANSPARENT_HUGEPAGE_FLAG"] is None:
            return None
        always = bool(f >> bit["TRANSPARENT_HUGEPAGE_FLAG"] & 1)
        madv = bool(f >> bit["TRANSPARENT_HUGEPAGE_REQ_MADV_FLAG"] & 1) \
            if bit["TRANSPARENT_HUGEPAGE_REQ_MADV_FLAG"] is not None else False
        hg = bool(flags & vm.get("hg", 0))
        anonymous = vm_ops == 0
        pmd_order = (self.hpage_pmd >> self.page_shift).bit_length() - 1
        temp_stack = bool(flags & (vm.get("gd", 0))) and \
            (flags & (vm.get("sr", 0) | vm.get("rr", 0))) == (vm.get("sr", 0) | vm.get("rr", 0))
        nohuge = bool(flags & vm.get("nh", 0)) or bool(mm_flags >> MMF_DISABLE_THP & 1)
        shmem = self._is_shmem(vma)
        if shmem is None:
            return None
        if not self.new_thp_rule:       # transparent_hugepage_enabled()
            if not self._suitable(vma, anonymous, pmd_order):
                return 0
            if anonymous:
                if nohuge or temp_stack:
                    return 0
                return int(always or (madv and hg))
            return None if shmem else 0
        if nohuge:
            return 0
        for name in ("TRANSPARENT_HUGEPAGE_NEVER_DAX", "TRANSPARENT_HUGEPAGE_UNSUPPORTED"):
            if bit[name] is not None and f >> bit[name] & 1:
                return 0
        if self.orders is not None:
            return self._thp_orders(vma, vm_ops, anonymous, shmem, hg, always, madv,
                                    temp_stack, pmd_order)
        special = sum(vm.get(m, 0) for m in ("io", "de", "pf", "mm", "ht"))
        if flags & special or not self._suitable(vma, anonymous, pmd_order):
            return 0
        if shmem:               # shmem_huge_enabled(): before the sysfs THP settings
            huge = self._shmem_global_huge(vma, hg)
            return None if huge is None else int(huge)
        if not (always or (madv and hg)):
            return 0
        if not anonymous:
            return None if vma.file else 0      # file_thp_enabled(): not modelled
        return 0 if temp_stack else 1

    def _suitable(self, vma, anonymous: bool, order: int) -> bool:
        """thp_vma_suitable_order() at the VMA's last aligned block of that order."""
        n = 1 << order
        size = n << self.page_shift
        if not anonymous and ((vma.start >> self.page_shift) - vma.pgoff) % n:
            return False
        haddr = (vma.end - size) & ~(size - 1)
        return haddr >= vma.start and haddr + size <= vma.end

    def _thp_orders(self, vma, vm_ops: int, anonymous: bool, shmem: bool, hg: bool,
                    always: bool, madv: bool, temp_stack: bool, pmd_order: int) -> int | None:
        """thp_vma_allowable_orders(vma, TVA_SMAPS, THP_ORDERS_ALL) != 0 (VM_NO_KHUGEPAGED
        does not apply to smaps)."""
        k, vm, flags = self.k, self.vm, vma.flags
        if len(self.orders) != 3:
            return None
        if anonymous:       # the sysfs orders first (thp_vma_allowable_orders())
            a, m, inherit = self.orders
            orders = a | (m if hg else 0) | (inherit if always or (hg and madv) else 0)
        elif vma.file and flags & (vm.get("pf", 0) | vm.get("mm", 0)):
            return None     # vma_is_special_huge(): THP_ORDERS_ALL_SPECIAL, not modelled
        else:
            # THP_ORDERS_ALL_FILE_DEFAULT: orders 1 to the page cache's largest (the PMD's)
            orders = ((1 << (pmd_order + 1)) - 1) & ~1
        orders = sum(1 << o for o in range(orders.bit_length())
                     if orders >> o & 1 and self._suitable(vma, anonymous, o))
        if not orders:
            return 0
        if shmem:
            allowed = self._shmem_orders(vma, vm_ops, hg, pmd_order)
            if allowed is None or (allowed and not orders & allowed):
                return None     # kernels differ on whether the suitable orders mask it
            return int(bool(allowed))
        if anonymous:
            return 0 if temp_stack else 1
        if not (always or (madv and hg)):
            return 0
        try:
            if k.has("vm_operations_struct", "huge_fault") and k.ptr(
                    vm_ops + k.off("vm_operations_struct", "huge_fault")):
                return 1
            # file_thp_enabled(): only kernels that read large folios of regular files
            # (CONFIG_READ_ONLY_THP_FOR_FS, which adds address_space.nr_thps), for a file
            # no one has open for writing
            if not vma.file or not k.has("address_space", "nr_thps"):
                return 0
            inode = k.ptr(vma.file + k.off("file", "f_inode"))
            writers = k.mem.sint(inode + k.off("inode", "i_writecount"), 4)
            return int(writers <= 0 and self._regular(inode))
        except (MemoryReadError, WalkError):
            return None

    def _regular(self, inode: int) -> bool:
        """S_ISREG(inode->i_mode)."""
        k = self.k
        return k.mem.uint(inode + k.off("inode", "i_mode"), 2) & 0o170000 == 0o100000

    # SHMEM_HUGE_* (mm/shmem.c): the values of shmem_huge and shmem_sb_info.huge
    SHMEM_HUGE = {0: "never", 1: "always", 2: "within_size", 3: "advise", -1: "deny",
                  -2: "force"}

    def _int_var(self, name: str) -> int | None:
        """A kernel int or unsigned long variable (by its symbol), None when unknown."""
        k = self.k
        sym = k.sym(name)
        if sym is None:
            return None
        try:
            return k.mem.sint(sym, 4) if name == "shmem_huge" else k.ptr(sym)
        except (MemoryReadError, WalkError):
            return None

    def _shmem_global_huge(self, vma, hg: bool) -> bool | None:
        """shmem_is_huge() / shmem_huge_global_enabled() of a shmem VMA (its VM_NOHUGEPAGE
        already checked): the top-level shmem_enabled (shmem_huge), then the mount's
        huge= option; None: within_size or a setting this vmdex does not know."""
        k = self.k
        top = self.SHMEM_HUGE.get(self._int_var("shmem_huge"))
        if top is None or not k.has("shmem_sb_info", "huge"):
            return None
        try:
            inode = k.ptr(vma.file + k.off("file", "f_inode"))
            if not self._regular(inode):
                return False
            if top in ("force", "deny"):
                return top == "force"
            sb = k.ptr(inode + k.off("inode", "i_sb"))
            info = k.ptr(sb + k.off("super_block", "s_fs_info"))
            huge = self.SHMEM_HUGE.get(k.mem.sint(info + k.off("shmem_sb_info", "huge"),
                                                  k.types.member_size("shmem_sb_info", "huge")))
        except (MemoryReadError, WalkError, TypeError):
            return None
        if huge == "always":
            return True
        if huge == "advise":
            return hg
        return False if huge == "never" else None

    def _shmem_orders(self, vma, vm_ops: int, hg: bool, pmd_order: int) -> int | None:
        """shmem_allowable_huge_orders(): a tmpfs file the PMD order when its huge setting
        allows it; anonymous shmem (shmem_anon_vm_ops) by the per-order shmem settings."""
        k = self.k
        huge = self._shmem_global_huge(vma, hg)
        anon_ops = k.sym("shmem_anon_vm_ops")
        if anon_ops is None or vm_ops != anon_ops:
            return None if huge is None else (1 << pmd_order if huge else 0)
        top = self.SHMEM_HUGE.get(self._int_var("shmem_huge"))
        if top == "deny":
            return 0
        got = [self._int_var(n) for n in ("huge_shmem_orders_always", "huge_shmem_orders_madvise",
                                           "huge_shmem_orders_inherit",
                                           "huge_shmem_orders_within_size")]
        if None in got[:3] or top is None:
            return None
        a, m, inherit, within = got
        if top == "force":
            return inherit
        if within or huge is None:
            return None
        return a | (m if hg else 0) | (inherit if huge else 0)
