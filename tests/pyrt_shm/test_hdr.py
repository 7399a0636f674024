"""HDR histograms recorded from numba must be indistinguishable from ``hdrh`` recording the same values."""
import io
import math
import mmap
import multiprocessing as mp
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import posix_ipc
import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from layouts import histogram as H
from layouts.histogram import HIGHEST, HISTOGRAM
from pyrt_shm import hdr_convert as C
from pyrt_shm.hdr_recorder import (
    hdr_index,
    hdr_record,
    hdr_record_corrected,
    hdr_record_n,
    hdr_reset,
)

REPO = Path(__file__).resolve().parents[2]
PS = (50, 90, 99, 99.9, 99.99, 100)
EDGES = sorted({1, 2, 3, 1023, 1024, 2047, 2048, 2049, 4095, 4096, HIGHEST - 1, HIGHEST}
               | {2 ** k + d for k in range(1, 36) for d in (-1, 0, 1)})
VALUES = st.one_of(
    st.sampled_from(EDGES),
    st.floats(0, math.log2(HIGHEST)).map(lambda x: min(max(int(2 ** x), 1), HIGHEST)),
)


def ref_hdrh(values=(), counts=None):
    h = HdrHistogram(H.LOWEST, H.HIGHEST, H.SIGFIGS)
    for k, v in enumerate(values):
        assert h.record_value(int(v), 1 if counts is None else int(counts[k]))
    return h


def rows(n=1):
    return np.zeros(n, HISTOGRAM)


def np_index(values):
    """HdrHistogram's counts index in numpy (bit length from frexp, exact below 2**53)."""
    v = np.asarray(values, np.int64)
    bit_length = np.frexp((v | H.SUB_BUCKET_MASK).astype(np.float64))[1]
    bucket = bit_length - H.UNIT_MAGNITUDE - (H.SUB_BUCKET_HALF_COUNT_MAGNITUDE + 1)
    sub = v >> (bucket + H.UNIT_MAGNITUDE)
    return ((bucket + 1) << H.SUB_BUCKET_HALF_COUNT_MAGNITUDE) + (sub - H.SUB_BUCKET_HALF_COUNT)


@njit
def record_all(hists, i, values):
    """The hot-path shape: hdr_record called (inlined) from other jitted code."""
    for v in values:
        hdr_record(hists, i, v)


def assert_same(row, ref):
    h = C.to_hdrh(row)
    assert h.equals(ref)
    assert ref.equals(h)
    expected = {p: ref.get_value_at_percentile(p) for p in PS}
    assert {p: h.get_value_at_percentile(p) for p in PS} == expected
    assert C.percentiles(row, PS) == expected


# --- bucket maths -------------------------------------------------------------------------

def test_hdr_index_matches_hdrh():
    ref = ref_hdrh()
    values = list(range(0, 10_000)) + EDGES + [HIGHEST // 3, 123_456_789, 59_999_999_999]
    assert [hdr_index(v) for v in values] == [ref.get_counts_array_index(v) for v in values]
    assert list(np_index(values)) == [ref.get_counts_array_index(v) for v in values]
    assert hdr_index(HIGHEST) < H.COUNTS_LEN


def test_value_range_inverts_every_index():
    ref = ref_hdrh()
    index = np.arange(H.COUNTS_LEN)
    lo, width = C._value_range(index)
    assert list(lo) == [ref.get_value_from_index(i) for i in index]
    assert list(lo + width - 1) == [ref.get_highest_equivalent_value(ref.get_value_from_index(i))
                                    for i in index]


# --- recording equals hdrh -----------------------------------------------------------------

@settings(deadline=None, max_examples=40)
@given(st.lists(VALUES, max_size=200))
def test_record_equals_hdrh(values):
    hists = rows(2)
    for v in values:
        hdr_record(hists, 1, v)
    assert_same(hists[1], ref_hdrh(values))
    h = hists[1]
    assert h["total"] == len(values) and h["overflow"] == 0
    assert (h["min"], h["max"]) == ((min(values), max(values)) if values else (0, 0))
    assert h["sum"] == sum(values)  # exact: the sum stays far below 2**53
    assert hists[0]["total"] == 0 and hists[0]["counts"].sum() == 0  # other rows untouched


@settings(deadline=None, max_examples=30)
@given(st.lists(st.tuples(VALUES, st.integers(1, 10 ** 9)), max_size=50))
def test_record_n_equals_hdrh(pairs):
    hists = rows()
    for v, n in pairs:
        hdr_record_n(hists, 0, v, n)
    assert_same(hists[0], ref_hdrh([v for v, _ in pairs], [n for _, n in pairs]))
    assert hists[0]["total"] == sum(n for _, n in pairs)


def test_record_n_ignores_non_positive_count():
    hists = rows()
    hdr_record_n(hists, 0, 500, 0)
    hdr_record_n(hists, 0, 500, -3)
    assert hists[0]["total"] == 0 and hists[0]["counts"].sum() == 0 and hists[0]["min"] == 0


def test_njit_caller_and_numpy_values():
    values = np.exp(np.random.default_rng(7).uniform(0, math.log(HIGHEST), 5000)).astype(np.int64)
    hists = rows()
    record_all(hists, 0, values)
    assert_same(hists[0], ref_hdrh(values))


# --- coordinated omission ------------------------------------------------------------------

@st.composite
def corrected_cases(draw):
    """(value, interval) pairs whose back-fill stays small enough for hdrh's Python loop."""
    interval = draw(st.one_of(st.integers(-5, 0), st.integers(1, 50), st.integers(1, 10 ** 7)))
    cap = HIGHEST if interval <= 0 else min(HIGHEST, interval * 3000)
    return draw(st.integers(1, cap)), interval


@settings(deadline=None, max_examples=60)
@given(st.lists(corrected_cases(), min_size=1, max_size=5))
def test_record_corrected_equals_hdrh(cases):
    hists = rows()
    ref = ref_hdrh()
    for value, interval in cases:
        hdr_record_corrected(hists, 0, value, interval)
        assert ref.record_corrected_value(value, interval)
    assert_same(hists[0], ref)
    assert hists[0]["total"] == ref.get_total_count()


@pytest.mark.parametrize("value,interval,bulk", [
    (10, 3, False), (9, 3, False), (3, 3, False), (5_000, 1, True),   # 1 ns steps: bulk path
    (4_999_999, 1_000, False), (200_000, 3, True),
])
def test_corrected_both_paths_equal_hdrh(value, interval, bulk):
    n = (value - 1) // interval
    span = hdr_index(value - interval) - hdr_index(value - n * interval) + 1 if n else 0
    assert (n > span) == bulk  # the case exercises the path it claims to
    hists = rows()
    hdr_record_corrected(hists, 0, value, interval)
    ref = ref_hdrh()
    ref.record_corrected_value(value, interval)
    assert_same(hists[0], ref)
    back = [value - k * interval for k in range(0, n + 1)]
    assert hists[0]["min"] == min(back) and hists[0]["max"] == value
    assert hists[0]["sum"] == pytest.approx(sum(back), rel=1e-12)


def test_corrected_huge_backfill_is_bounded_and_exact():
    """6e6 and 6e10 back-filled values: counted per bucket, checked against numpy."""
    value, interval = HIGHEST, 9_973
    hists = rows()
    hdr_record_corrected(hists, 0, value, interval)
    back = value - interval * np.arange(0, (value - 1) // interval + 1, dtype=np.int64)
    expected = np.bincount(np_index(back), minlength=H.COUNTS_LEN)
    assert np.array_equal(hists[0]["counts"], expected)
    assert hists[0]["total"] == back.size and hists[0]["min"] == back[-1]
    del back

    # 1 ns interval over a 60 s stall: every value 1..HIGHEST once.
    hdr_reset(hists, 0)
    hdr_record_corrected(hists, 0, HIGHEST + 5, 1)
    lo, width = C._value_range(np.arange(H.COUNTS_LEN))
    hi = np.minimum(lo + width - 1, HIGHEST)
    expected = np.where(lo <= HIGHEST, np.maximum(hi - np.maximum(lo, 1) + 1, 0), 0)
    assert np.array_equal(hists[0]["counts"], expected)
    assert hists[0]["total"] == HIGHEST and hists[0]["overflow"] == 1
    assert hists[0]["sum"] == pytest.approx(HIGHEST * (HIGHEST + 1) / 2, rel=1e-12)


# --- value policy --------------------------------------------------------------------------

def test_overflow_is_clamped_and_counted():
    hists = rows()
    for v in (HIGHEST + 1, 2 ** 62, 5):
        hdr_record(hists, 0, v)
    hdr_record_n(hists, 0, HIGHEST * 2, 4)
    assert hists[0]["overflow"] == 6
    assert hists[0]["max"] == HIGHEST and hists[0]["total"] == 7
    assert_same(hists[0], ref_hdrh([HIGHEST, HIGHEST, 5, HIGHEST], [1, 1, 1, 4]))
    assert C.summary(hists[0])["overflow"] == 6


def test_non_positive_values_count_as_one_ns():
    hists = rows()
    for v in (0, -5, np.iinfo(np.int64).min, 7):
        hdr_record(hists, 0, v)
    hdr_record_corrected(hists, 0, -10, 3)
    assert hists[0]["overflow"] == 0 and hists[0]["min"] == 1 and hists[0]["total"] == 5
    assert_same(hists[0], ref_hdrh([1, 1, 1, 7, 1]))


def test_reset_and_zero_row_is_empty_histogram():
    hists = rows(2)
    record_all(hists, 0, np.array([5, 50, 5000], np.int64))
    record_all(hists, 1, np.array([7], np.int64))
    hdr_reset(hists, 0)
    assert not any(hists[0][f] for f in ("total", "min", "max", "sum", "overflow"))
    assert hists[0]["counts"].sum() == 0 and hists[1]["total"] == 1
    assert_same(hists[0], ref_hdrh())
    assert C.summary(hists[0])["count"] == 0 and C.percentiles(hists[0]) == dict.fromkeys(PS, 0)


def test_conversion_recomputes_total_from_counts():
    """A snapshot taken mid-record (count stored, header not yet) still converts consistently."""
    hists = rows()
    record_all(hists, 0, np.array([100, 200, 300], np.int64))
    hists[0]["counts"][hdr_index(400)] += 1  # the writer's next record, caught half done
    h = C.to_hdrh(hists[0])
    assert h.get_total_count() == 4 and h.get_max_value() == 400
    assert h.equals(ref_hdrh([100, 200, 300, 400]))
    assert C.summary(hists[0])["count"] == 4


def test_snapshot_refuses_foreign_rows():
    with pytest.raises(TypeError):
        C.to_hdrh(np.zeros(1, [("counts", "<i8", (H.COUNTS_LEN,))])[0])
    hists = rows()
    hists[0]["counts"][3] = -1
    with pytest.raises(ValueError):
        C.to_hdrh(hists[0])


def test_summary_is_exact():
    hists = rows()
    values = [1500, 2500, 123_456_789]
    record_all(hists, 0, np.array(values, np.int64))
    s = C.summary(hists[0])
    assert (s["count"], s["min"], s["max"]) == (3, 1500, 123_456_789)
    assert s["mean"] == pytest.approx(sum(values) / 3)
    assert s["p50"] == ref_hdrh(values).get_value_at_percentile(50)
    assert s["p999"] == ref_hdrh(values).get_value_at_percentile(99.9)


# --- cross-process over POSIX shared memory -------------------------------------------------

def _values_for(seed, row):
    rng = np.random.default_rng([seed, row])
    values = np.exp(rng.uniform(0, math.log(HIGHEST), 20_000)).astype(np.int64)
    return np.concatenate([values, np.array(EDGES, np.int64)])


def _child_record(name, n_rows, seed):
    shm = posix_ipc.SharedMemory(name)
    mm = mmap.mmap(shm.fd, shm.size)
    shm.close_fd()
    hists = np.ndarray((n_rows,), HISTOGRAM, buffer=mm)
    for row in range(n_rows):
        record_all(hists, row, _values_for(seed, row))
    del hists
    mm.close()


def test_cross_process_shared_memory():
    name = f"/pyrt-test-hdr-{os.getpid()}"
    n_rows, seed = 2, 12345
    record_all(rows(), 0, np.array([1], np.int64))  # compile before fork
    shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=n_rows * HISTOGRAM.itemsize)
    try:
        mm = mmap.mmap(shm.fd, shm.size)
        shm.close_fd()
        hists = np.ndarray((n_rows,), HISTOGRAM, buffer=mm)
        child = mp.get_context("fork").Process(target=_child_record, args=(name, n_rows, seed))
        child.start()
        child.join(timeout=60)
        if child.is_alive():
            child.kill()
            child.join(5)
            pytest.fail("child did not finish within 60 s")
        assert child.exitcode == 0
        copies = [C.snapshot(hists[row]) for row in range(n_rows)]
        del hists
        mm.close()
    finally:
        try:
            posix_ipc.unlink_shared_memory(name)
        except posix_ipc.ExistentialError:
            pass
    assert not os.path.exists("/dev/shm/" + name[1:])
    for row, snap in enumerate(copies):
        assert_same(snap, ref_hdrh(_values_for(seed, row)))


# --- .hgrm, encoding, merging --------------------------------------------------------------

ROW_RE = re.compile(r"^ *(\d+\.\d{3}) (\d\.\d{12}) +(\d+) +(\d+\.\d{2})$")
LAST_RE = re.compile(r"^ *(\d+\.\d{3}) (1\.0{12}) +(\d+)$")


def test_write_hgrm_java_format(tmp_path):
    hists = rows()
    values = np.arange(1, 10_001, dtype=np.int64) * 1000  # 1..10,000 µs, uniform
    record_all(hists, 0, values)
    path = tmp_path / "lat.hgrm"
    C.write_hgrm(hists[0], path, unit_ratio=1000.0)
    assert os.listdir(tmp_path) == ["lat.hgrm"]
    lines = path.read_text().splitlines()
    assert lines[0] == "       Value     Percentile TotalCount 1/(1-Percentile)" and lines[1] == ""
    body, footer = lines[2:-3], lines[-3:]
    rows_ = [ROW_RE.match(line) for line in body[:-1]]
    assert all(rows_) and LAST_RE.match(body[-1])
    levels = [float(m.group(2)) for m in rows_]
    # Java's PercentileIterator: fixed ticks per half-distance to 100 % (hdrh's own drifts).
    assert levels[:17] == [0, .1, .2, .3, .4, .5, .55, .6, .65, .7, .75, .775, .8, .825, .85, .875,
                           .8875]
    assert levels == sorted(levels) and [float(m.group(1)) for m in rows_] == sorted(
        float(m.group(1)) for m in rows_)
    ref = ref_hdrh(values)
    p50 = ref.get_highest_equivalent_value(5_000_000)  # the 50 % row: top of 5 ms's bucket
    assert rows_[5].group(1) == "%.3f" % (p50 / 1000)
    assert int(rows_[5].group(3)) == np.count_nonzero(values <= p50)
    assert footer[0] == "#[Mean    = %12.3f, StdDeviation   = %12.3f]" % (
        ref.get_mean_value() / 1000, ref.get_stddev() / 1000)
    assert footer[1] == "#[Max     = %12.3f, Total count    = %12d]" % (
        ref.get_max_value() / 1000, 10_000)
    assert footer[2] == "#[Buckets = %12d, SubBuckets     = %12d]" % (26, 2048)
    assert LAST_RE.match(body[-1]).group(3) == "10000"


def test_write_hgrm_accepts_hdrh_and_empty(tmp_path):
    ref = ref_hdrh([3, 30, 300])
    C.write_hgrm(ref, tmp_path / "a.hgrm")
    hists = rows()
    record_all(hists, 0, np.array([3, 30, 300], np.int64))
    C.write_hgrm(hists[0], tmp_path / "b.hgrm")
    assert (tmp_path / "a.hgrm").read_text() == (tmp_path / "b.hgrm").read_text()
    C.write_hgrm(rows()[0], tmp_path / "empty.hgrm")
    text = (tmp_path / "empty.hgrm").read_text().splitlines()
    assert len(text) == 5 and ("Total count    = %12d" % 0) in text[3]


def test_encode_decode_round_trip():
    values = _values_for(1, 0)
    hists = rows()
    record_all(hists, 0, values)
    blob = C.encode(hists[0])
    assert blob.startswith(b"HISTF")
    decoded = HdrHistogram.decode(blob)
    assert decoded.equals(ref_hdrh(values)) and decoded.equals(C.to_hdrh(hists[0]))
    out = io.BytesIO()
    decoded.output_percentile_distribution(out, 1000.0)  # decoded objects are full hdrh objects
    assert out.getvalue()


def test_merge_rows_and_histograms():
    a, b = _values_for(2, 0), _values_for(2, 1)
    hists = rows(3)
    record_all(hists, 0, a)
    record_all(hists, 1, b)
    ref = ref_hdrh(a)
    ref.add(ref_hdrh(b))
    assert C.merge([hists[0], hists[1]]).equals(ref)
    assert C.merge(hists).equals(ref)  # a whole array; the empty third row adds nothing
    assert C.merge([hists[0], ref_hdrh(b)]).equals(ref)
    assert C.merge([]).equals(ref_hdrh())


def test_convert_module_does_not_import_numba():
    code = ("import sys, pyrt_shm.hdr_convert; "
            "assert 'numba' not in sys.modules, 'hdr_convert pulled in numba'")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60, env=env)
