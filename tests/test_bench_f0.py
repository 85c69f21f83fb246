"""Reference alignment and metrics of bench/f0_accuracy.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location(
    "f0_accuracy", Path(__file__).resolve().parents[1] / "bench" / "f0_accuracy.py"
)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_sample_reference_and_metrics():
    times = np.arange(100) * 0.01
    ref = np.where((times > 0.2) & (times < 0.8), 200.0 * 2 ** (times / 1.2), 0.0)
    at = np.arange(80) * 512 / 44100
    sampled = bench.sample_reference(times, ref, at)
    v = sampled > 0
    # voiced where the nearest reference frame is voiced; log-linear interpolation inside
    near = np.rint(at / 0.01).astype(int)
    np.testing.assert_array_equal(v, ref[np.clip(near, 0, 99)] > 0)
    inner = v & (np.abs(at - 0.5) < 0.25)
    np.testing.assert_allclose(sampled[inner], 200.0 * 2 ** (at[inner] / 1.2), rtol=1e-9)
    m = bench.metrics(sampled, np.where(v, sampled, 150.0), v.astype(np.float32))
    assert m["rpa"] == 1.0 and m["rmse_cents"] < 1e-6
    assert m["voicing_precision"] == m["voicing_recall"] == 1.0
    est = sampled * 2 ** (60 / 1200)  # 60 cents sharp: all wrong
    m = bench.metrics(sampled, np.where(v, est, 150.0), np.ones(80, np.float32))
    assert m["rpa"] == 0.0 and abs(m["rmse_cents"] - 60) < 1e-6
    assert m["voicing_recall"] == 1.0 and m["voicing_precision"] == v.mean()


def test_load_reference_formats(tmp_path):
    csv = tmp_path / "x_f0.csv"
    csv.write_text("0.0,0.0\n0.005804988662131519,220.5\n")
    t, f = bench.load_reference("vocadito", csv)
    assert t[1] == 256 / 44100 and f[1] == 220.5
    ptdb = tmp_path / "ref.f0"
    ptdb.write_text("0.0 0.0 1.0 0.1\n229.1 1.0 99.9 0.65\n")
    t, f = bench.load_reference("ptdb", ptdb, 0.016)
    np.testing.assert_allclose(t, [0.016, 0.026])
    assert list(f) == [0.0, 229.1]
