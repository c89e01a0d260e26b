"""The dump's own BTF and kallsyms parsers (indexer.kernel.btf, .kallsyms) on mutated real
bytes: a crafted input gives a KernelError (one line for the user), never another
exception, a hang or a huge allocation. The corpus (tests/corpus, `python -m
tests.corpus.make DUMP`) holds small valid slices of a fixture dump's real tables."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmdex.indexer.errors import KernelError, VmdexError
from vmdex.indexer.kernel import btf as B
from vmdex.indexer.kernel import kallsyms as K
from vmdex.indexer.kernel import types as T
from vmdex.indexer.kernel.vmcoreinfo import VmcoreInfo

CORPUS = Path(__file__).resolve().parent / "corpus"
BTF = (CORPUS / "btf.bin").read_bytes()
KALLSYMS = (CORPUS / "kallsyms.bin").read_bytes()
KALLSYMS_INFO = json.loads((CORPUS / "kallsyms.json").read_text())
FUZZ = settings(max_examples=300, deadline=2000,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def mutated(draw, data: bytes):
    """The bytes with a few edits: overwritten bytes or u32 words (small, huge, edge
    values), a cut, or a spliced copy of another part."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["byte", "word", "cut", "splice"]))
        if not buf:
            break
        at = draw(st.integers(0, len(buf) - 1))
        if op == "byte":
            buf[at] = draw(st.integers(0, 255))
        elif op == "word" and at + 4 <= len(buf):
            v = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF,
                                      0x80000000, 0xFFFFFFFF, len(buf), len(buf) + 1]))
            struct.pack_into("<I", buf, at, v)
        elif op == "cut":
            del buf[at:]
        else:
            src = draw(st.integers(0, len(buf) - 1))
            n = draw(st.integers(1, 64))
            buf[at:at + n] = buf[src:src + n]
    return bytes(buf)


def extract(data: bytes):
    return B.extract(B.Btf(data), T.WANTED_STRUCTS, T.WANTED_TYPEDEFS, T.WANTED_ENUMS,
                     T.WANTED_ENUMERATORS, True)


def test_btf_corpus_parses():
    g, _ = extract(BTF)
    assert "struct task_struct" in g.named


@FUZZ
@given(mutated(BTF))
def test_btf_mutated(data):
    try:
        extract(data)
    except KernelError:
        pass


def kallsyms_of(raw: bytes, entries: dict):
    base = int(KALLSYMS_INFO["base"], 16)

    def read(va, n):
        if n < 0 or va < base or va - base + n > len(raw):
            raise KernelError(f"no memory at {va:x}")
        return raw[va - base:va - base + n]
    return K.from_vmcoreinfo(read, VmcoreInfo(entries))


def test_kallsyms_corpus_decodes():
    ks = kallsyms_of(KALLSYMS, KALLSYMS_INFO["vmcoreinfo"])
    assert ks.address("_stext") == int(KALLSYMS_INFO["vmcoreinfo"]["SYMBOL(_stext)"], 16)


@FUZZ
@given(mutated(KALLSYMS))
def test_kallsyms_mutated(raw):
    try:
        kallsyms_of(raw, KALLSYMS_INFO["vmcoreinfo"])
    except VmdexError:
        pass


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(KALLSYMS_INFO["vmcoreinfo"])),
                       st.integers(0, (1 << 64) - 1).map(lambda v: f"{v:x}"), max_size=4))
def test_kallsyms_bad_vmcoreinfo(changed):
    """VMCOREINFO pointing anywhere (the tables' sizes then come out of garbage)."""
    try:
        kallsyms_of(KALLSYMS, {**KALLSYMS_INFO["vmcoreinfo"], **changed})
    except VmdexError:
        pass


@FUZZ
@given(mutated(KALLSYMS))
def test_kallsyms_scan_mutated(raw):
    """The memory scan of kernels without VMCOREINFO tables, over a small image."""
    base = int(KALLSYMS_INFO["base"], 16)

    def read(va, n):
        if va < base or va - base + n > len(raw):
            raise KernelError("outside")
        return raw[va - base:va - base + n]
    info = VmcoreInfo({"SYMBOL(_stext)": f"{base:x}"})
    try:
        K.scan(read, info, 4096, size=len(raw) + 4096)
    except VmdexError:
        pass


@pytest.mark.parametrize("cut", [0, 10, 23, 24, 100])
def test_btf_truncated_is_one_line(cut):
    with pytest.raises(KernelError) as e:
        B.Btf(BTF[:cut])
    assert "\n" not in str(e.value)


def _names_blob(raw: bytes):
    """kallsyms_names .. kallsyms_token_table of the corpus, and num_syms."""
    info = VmcoreInfo(KALLSYMS_INFO["vmcoreinfo"])
    base = int(KALLSYMS_INFO["base"], 16)
    names, table = info.symbol("kallsyms_names") - base, info.symbol("kallsyms_token_table") - base
    n = struct.unpack_from("<I", KALLSYMS, info.symbol("kallsyms_num_syms") - base)[0]
    return raw[names:table], n


@FUZZ
@given(st.data())
def test_marker_walk_is_the_sequential_walk(data):
    """The names walked from every kallsyms_markers entry at once (numpy) give what the
    one-by-one walk gives, or nothing: on the real table and on mutated ones."""
    blob, n = _names_blob(KALLSYMS)
    if data.draw(st.booleans()):
        blob = data.draw(mutated(blob))
    markers = K.markers_before_tokens(blob, n)
    for big in (True, False):
        fast = K.records_from_markers(blob, n, big, markers) if markers else None
        if fast is not None:
            slow = K.records(blob, n, big)
            assert slow is not None and fast == slow
            assert K.markers_follow(blob, K.marker_offsets(slow[0], big), slow[1])


def test_names_that_expand_past_any_kernel_are_refused():
    """Tokens point anywhere in a 64 KiB table: a few thousand token bytes of a long token
    would expand to hundreds of MiB. The expansion is refused before it is made."""
    toks = [b"A" * 60000] * 256
    codes = 5000
    blob = bytes([0x80 | (codes & 0x7F), codes >> 7]) + bytes(codes)
    with pytest.raises(KernelError, match="expands past"):
        K.expand(blob, ([2], [codes]), toks)
    assert K.expand(blob[:2 + 10], ([2], [10]), [b"x"] * 256) == b"x" * 10


def test_marker_walk_on_the_corpus():
    blob, n = _names_blob(KALLSYMS)
    markers = K.markers_before_tokens(blob, n)
    assert markers and K.records_from_markers(blob, n, True, markers) == K.records(blob, n, True)


@FUZZ
@given(mutated(KALLSYMS), st.integers(0, 1 << 20))
def test_kallsyms_scan_below_data_mutated(raw, gap):
    """The scan that looks first below a data symbol VMCOREINFO names (kernels before 6.0),
    over a small image: the same one-line errors, never another exception."""
    base = int(KALLSYMS_INFO["base"], 16)

    def read(va, n):
        if va < base or va - base + n > len(raw):
            raise KernelError("outside")
        return raw[va - base:va - base + n]
    info = VmcoreInfo({"SYMBOL(_stext)": f"{base:x}", "SYMBOL(init_uts_ns)":
                       f"{base + min(gap, len(raw)):x}"})
    try:
        K.scan(read, info, 4096, size=len(raw) + 4096)
    except VmdexError:
        pass


def test_scan_of_digit_runs_is_bounded():
    """An image that is nothing but "0".."9" token-table look-alikes: a bounded look."""
    import time

    img = (K.DIGITS + bytes(12)) * ((8 << 20) // 32)
    t0 = time.perf_counter()
    assert K.find_token_index(img) is None
    assert time.perf_counter() - t0 < 30
