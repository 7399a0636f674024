"""Golden layout of the HDR histogram row and its HdrHistogram-derived constants."""
import os
import subprocess
import sys
from pathlib import Path

from hdrh.histogram import HdrHistogram

from layouts import histogram as H

REPO = Path(__file__).resolve().parents[2]


def test_derived_constants_equal_hdrh():
    ref = HdrHistogram(1, 60_000_000_000, 3)
    assert (H.LOWEST, H.HIGHEST, H.SIGFIGS) == (1, 60_000_000_000, 3)
    assert H.UNIT_MAGNITUDE == ref.unit_magnitude
    assert H.SUB_BUCKET_HALF_COUNT_MAGNITUDE == ref.sub_bucket_half_count_magnitude
    assert H.SUB_BUCKET_COUNT == ref.sub_bucket_count
    assert H.SUB_BUCKET_HALF_COUNT == ref.sub_bucket_half_count
    assert H.SUB_BUCKET_MASK == ref.sub_bucket_mask
    assert H.BUCKET_COUNT == ref.bucket_count
    assert H.COUNTS_LEN == ref.counts_len == 27648


def test_golden_offsets_and_size():
    dt = H.HISTOGRAM
    offsets = {name: dt.fields[name][1] for name in dt.names}
    assert offsets == {"total": 0, "min": 8, "max": 16, "sum": 24, "overflow": 32, "counts": 64}
    assert dt.fields["counts"][0] == ("<i8", (27648,))
    assert dt["sum"] == "<f8"
    assert all(dt[name] == "<i8" for name in ("total", "min", "max", "overflow"))
    assert dt.itemsize == 221_248 and dt.itemsize % 64 == 0
    assert dt.isalignedstruct


def test_layout_imports_neither_hdrh_nor_numba():
    code = ("import sys, layouts.histogram; "
            "bad = {'hdrh', 'numba'} & set(sys.modules); assert not bad, bad")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60, env=env)
