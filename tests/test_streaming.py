"""The page-table walk streams inside one address space: leaves come in chunks and the
runs built from them are the same, row for row, whatever the chunk size (down to one
leaf) — so memory is bounded by the chunk, not by the address space, and nothing about
the index depends on it."""
from __future__ import annotations

import pytest

from tests import fixturedata as F
from tests.conftest import primary_variant

KERNELS = F.kernels()


def _walked(kernel):
    from vmdex.indexer import ingest as I
    from vmdex.indexer.dumpfile import open_dump
    from vmdex.indexer.kernel.symtab import build_id
    from vmdex.indexer.kernel.types import load_kernel_types
    from vmdex.indexer.kernel.vmcoreinfo import VmcoreInfo

    vml = F.vmlinux(kernel)
    phys = open_dump(F.dump(kernel, primary_variant(kernel)))
    types, symtab = load_kernel_types(vml)
    img = I.walk_dump(phys, VmcoreInfo.parse(phys.vmcoreinfo), types, symtab.address, vml,
                      build_id(vml), "x")
    return phys, img


def _runs(phys, img, chunk):
    from vmdex.indexer.walk.pages import RunBuilder
    from vmdex.indexer.arch.pagewalk import iter_user_leaves

    rows, batches = [], 0
    top = img.arch.user_top
    for a, mm in img.mms.items():
        ranges = [(v.start, v.end) for v in mm.vmas]
        b, faults = RunBuilder(ranges, img.arch), []
        parts = []
        for batch in iter_user_leaves(phys, img.arch, img.arch.user_root(mm.pgd), top,
                                      ranges, faults, chunk_leaves=chunk):
            # chunks are cut between PMD tables: at most one PMD table's leaves over
            assert len(batch.va) <= chunk + 512 * 512, "a chunk outgrew its bound"
            batches += 1
            parts.append(b.feed(batch))
        parts.append(b.finish())
        for r in parts:
            rows += [(a,) + t for t in zip(r.vma_index.tolist(), r.va.tolist(),
                                           r.npages.tolist(), r.level.tolist(), r.kind.tolist(),
                                           r.pa.tolist(), r.swap_offset.tolist())]
    return rows, batches


@pytest.mark.parametrize("kernel", KERNELS)
def test_runs_do_not_depend_on_chunk_size(kernel):
    phys, img = _walked(kernel)
    whole, n1 = _runs(phys, img, 1 << 40)
    assert whole and n1 <= len(img.mms)            # at most one chunk per mm when unbounded
    for chunk in (1, 3, 511, 512, 4096):
        rows, n = _runs(phys, img, chunk)
        assert n > n1 and rows == whole, chunk
