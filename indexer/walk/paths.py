"""File paths the way crash prints them (its own dentry walk, not the kernel's d_path).

crash walks d_parent up to each filesystem's root dentry and crosses mounts through
mnt_mountpoint, ignoring mnt_root and d_op->d_dname: pseudo files therefore have no leading
slash (`dev/zero`), deleted files keep their old name, and bind mounts show the path inside
the source filesystem. The walk ends at the root of the file's mount namespace whatever the
task's root, so a container's files are named as in the initial namespace. An overlayfs
mapping is named by vm_file's f_path: the overlay's file, or on kernels with
backing_file.user_path the layer's (smaps_vma.VmaTexts.user_path is the kernel's side).
"""
from __future__ import annotations

from vmdex.indexer.errors import MemoryReadError, WalkError
from vmdex.indexer.walk.kernel import Kernel

MAX_DEPTH = 4096      # components; bounds a corrupt (cyclic) dentry chain
BUFSIZE = 1500        # crash's path buffer


class PathResolver:
    def __init__(self, k: Kernel):
        self.k = k
        self.cache: dict[tuple[int, int], str] = {}
        self.d_name = k.off("dentry", "d_name")
        self.q_len = k.off("qstr", "len")
        self.q_name = k.off("qstr", "name")
        self.d_parent = k.off("dentry", "d_parent")
        self.mnt_in_mount = k.off("mount", "mnt")
        self.mnt_parent = k.off("mount", "mnt_parent")
        self.mnt_mountpoint = k.off("mount", "mnt_mountpoint")
        self.f_dentry = k.off("file", "f_path") + k.off("path", "dentry")
        self.f_mnt = k.off("file", "f_path") + k.off("path", "mnt")
        self.devname = k.off("mount", "mnt_devname")

    def file_path(self, file: int) -> str:
        """Path of a struct file, '' when it cannot be named."""
        k = self.k
        dentry, mnt = k.ptr(file + self.f_dentry), k.ptr(file + self.f_mnt)
        key = (dentry, mnt)
        if key not in self.cache:
            try:
                self.cache[key] = self._walk(dentry, mnt)
            except (MemoryReadError, WalkError):
                self.cache[key] = ""
        return self.cache[key]

    def mount_devname(self, file: int) -> str:
        k = self.k
        mount = k.ptr(file + self.f_mnt) - self.mnt_in_mount
        return k.mem.cstring(k.ptr(mount + self.devname), 256).decode("latin-1")

    def _name(self, dentry: int) -> str | None:
        k = self.k
        q = dentry + self.d_name
        length = k.mem.u32(q + self.q_len)
        name_ptr = k.ptr(q + self.q_name)
        if length == 0 or name_ptr == 0:
            return None
        raw = k.mem.read(name_ptr, length + 1)
        name = raw.split(b"\0", 1)[0]
        if len(name) != length:
            return None
        return name.decode("utf-8", "surrogateescape")

    def _walk(self, dentry: int, vfsmnt: int) -> str:
        k = self.k
        path = ""
        first = True
        for _ in range(MAX_DEPTH):
            name = self._name(dentry)
            if name is None:
                break
            if first:
                path = name
                first = False
            elif name == "/" or path.startswith("/"):
                path = name + path
            else:
                path = name + "/" + path
            if len(path) >= BUFSIZE:
                break
            parent = k.ptr(dentry + self.d_parent)
            if parent != dentry:
                dentry = parent
                continue
            # A filesystem root: continue from where it is mounted, if anywhere.
            if not vfsmnt:
                break
            mount = vfsmnt - self.mnt_in_mount
            if path.startswith("//"):
                path = path[1:]
            mnt_parent = k.ptr(mount + self.mnt_parent)
            if mnt_parent == mount:
                break
            dentry = k.ptr(mount + self.mnt_mountpoint)
            vfsmnt = mnt_parent + self.mnt_in_mount
        if len(path) > 1 and path.endswith("/"):
            path = path[:-1]
        return path


def swap_devices(k: Kernel, paths: PathResolver, errors: list[str]) -> tuple[int, dict[int, str]] | None:
    """(length of swap_info[], {type: device path}) or None when the kernel lacks the symbols.

    crash prints a swap line only when both nr_swapfiles and swap_info exist.
    """
    if k.sym("nr_swapfiles") is None or k.sym("swap_info") is None:
        return None
    base = k.sym("swap_info")
    n = k.types.variable_array_length("swap_info") or 32
    out: dict[int, str] = {}
    swap_file = k.off("swap_info_struct", "swap_file")
    for t in range(n):
        try:
            si = k.ptr(base + 8 * t)
            if not si:
                continue
            f = k.ptr(si + swap_file)
            if not f:
                continue
            p = paths.file_path(f)
            devname = paths.mount_devname(f)
            if devname in ("devtmpfs", "udev") and not p.startswith("/dev/"):
                p = "/dev" + p
            out[t] = p
        except (MemoryReadError, WalkError) as exc:
            errors.append(f"swap_info[{t}]: {exc}")
    return n, out
