"""Lag estimation, bad-frame masking, resampling onto the z grid, and the LLF CSV import."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from common.synthetic import DEMO_SINGERS, sing
from motion.align import bad_frames, resample_to_grid
from motion.channels import INDEX, NAMES
from motion.import_llf import import_take, read_llf_csv
from motion.lag import estimate_lag, loudness_envelope, mouth_opening
from motion.synthetic import sample_face
from motion.voice import frame_times


def _syllables(seconds: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Singing with a syllable-rate loudness pattern (so the envelope has structure)."""
    wav, f0 = sing(seconds, DEMO_SINGERS[0], seed=seed)
    rng = np.random.default_rng(seed)
    t = np.arange(len(wav)) / 44100
    beats = np.cumsum(rng.uniform(0.15, 0.4, 100))
    amp = np.zeros_like(t)
    for b in beats[beats < seconds]:
        amp += np.exp(-0.5 * ((t - b) / 0.05) ** 2)
    amp = np.clip(amp, 0.05, 1)
    return (wav * amp).astype(np.float32), f0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_injected_70ms_lag_recovered_within_5ms(seed):
    wav, _ = _syllables(8.0, seed)
    env, t = loudness_envelope(wav, 44100)
    curves = np.zeros((len(t), 61))  # a jaw that opens with the loudness (0 at -40 dB)
    curves[:, INDEX["JawOpen"]] = np.convolve(np.clip((env + 40) / 40, 0, 1), np.hanning(9) / 4.5,
                                              "same")  # fmt: skip
    stamps, vals = sample_face(t, curves, len(wav) / 44100, lag=0.070, jitter=0.002, seed=seed)
    env, env_t = loudness_envelope(wav, 44100)
    lag, r = estimate_lag(stamps, mouth_opening(vals), env, env_t)
    assert abs(lag - 0.070) < 0.005, lag
    assert r > 0.5
    lag0, _ = estimate_lag(stamps, mouth_opening(sample_face(t, curves, 8.0, lag=0.0, seed=seed)[1]),
                           env, env_t)  # fmt: skip
    assert abs(lag0) < 0.005


def test_bad_frames_and_grid_resampling():
    n = 120
    t = np.arange(n) / 60
    v = np.tile(np.linspace(0.1, 1, n)[:, None], (1, 61)).astype(np.float32)
    v[10] = np.nan
    v[20, :52] = 0  # tracking lost
    v[31] = v[30]  # frozen
    v[32] = v[30]
    bad, counts = bad_frames(v)
    assert counts == {"non_finite": 1, "tracking_lost": 1, "frozen": 2}
    assert bad[[10, 20, 31, 32]].all() and bad.sum() == 4
    good = ~bad
    good[60:75] = False  # a 250 ms drop-out
    grid = frame_times(200)
    out, mask = resample_to_grid(t, v, good, grid)
    inside = (grid > 0.05) & (grid < 0.95)
    np.testing.assert_allclose(out[inside & mask, 17], np.interp(grid, t[good], v[good, 17])[inside & mask],
                               atol=1e-5)  # fmt: skip
    assert not mask[(grid > 1.05) & (grid < 1.2)].any()  # the drop-out
    assert not mask[grid > t[-1]].any()
    assert mask[(grid > 0.3) & (grid < 0.9)].all()


def test_import_llf_csv_maps_columns_by_name(tmp_path):
    """A small CSV in the app's export layout (JawRight before JawLeft, wall-clock timecodes)."""
    app_order = list(NAMES)
    app_order[15], app_order[16] = app_order[16], app_order[15]
    app_order[21], app_order[22] = app_order[22], app_order[21]
    rows = ["Timecode,BlendshapeCount," + ",".join(app_order)]
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 1, (30, 61))
    for k in range(30):
        frame = 58 + k  # crosses a second boundary at 60 fps
        sec, ff = 39 + frame // 60, frame % 60
        vals = [truth[k, NAMES.index(name)] for name in app_order]
        rows.append(f"23:59:{sec:02d}:{ff:02d}.5,61," + ",".join(f"{x:.10f}" for x in vals))
    csv = tmp_path / "Take_iPhone_cal.csv"
    csv.write_text("\n".join(rows) + "\n")
    values, secs, info = read_llf_csv(csv)
    np.testing.assert_allclose(values, truth, atol=1e-6)
    np.testing.assert_allclose(np.diff(secs), 1 / 60, atol=1e-9)
    assert secs[0] == pytest.approx(23 * 3600 + 59 * 60 + 39 + 58.5 / 60)
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(44100), 44100)
    take = import_take(csv, wav, tmp_path / "take", offset_ms=10)
    assert take.t[0] == pytest.approx(0.010) and take.t[-1] == pytest.approx(0.010 + 29 / 60)
    assert take.values[0, INDEX["JawLeft"]] == pytest.approx(truth[0, 15], abs=1e-6)
