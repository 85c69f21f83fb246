"""The realtime benches' helpers (bench/realtime_common.py): delay locator, per-window constancy,
block statistics, the smallest-block search, the input builder; and the scripts' command lines.
Constructed signals only (no ../shared)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from bench import realtime_common as rc
from common.synthetic import DEMO_SINGERS, sing
from tests.conftest import ROOT, run_script

SR = rc.SR
HOP = 512  # the model hop: the tolerance the issue asks for


def delayed(x: np.ndarray, d: int) -> np.ndarray:
    """``x`` delayed by ``d`` samples (zeros in front), same length."""
    return (
        np.concatenate([np.zeros(d, np.float32), x[: len(x) - d]])
        if d >= 0
        else np.concatenate([x[-d:], np.zeros(-d, np.float32)])
    )


@pytest.fixture(scope="module")
def phrase() -> np.ndarray:
    """12 s of synthetic singing with pauses (two singers back to back)."""
    a, _ = sing(6.0, DEMO_SINGERS[0], seed=3)
    b, _ = sing(6.0, DEMO_SINGERS[1], seed=4)
    return np.concatenate([a, b])


@pytest.mark.parametrize("delay", [0, 3001, 11025, 20480])
def test_locator_finds_a_known_delay_through_a_different_waveform(phrase, delay):
    # y: the same loudness contour on another carrier (white noise), delayed: only the envelope
    # is shared, as between a stream and an offline conversion that are not in phase
    env = np.sqrt(np.convolve(phrase.astype(np.float64) ** 2, np.ones(256) / 256, mode="same"))
    noise = np.random.default_rng(0).standard_normal(len(phrase))
    y = delayed((env * noise).astype(np.float32), delay)
    d = rc.locate_delay(phrase, y, SR, max_delay_s=1.0)
    assert abs(d["delay_samples"] - delay) <= HOP, d
    assert d["corr"] > 0.8
    # and the plain delayed copy to within a few samples of the envelope hop
    d = rc.locate_delay(phrase, delayed(phrase, delay), SR, max_delay_s=1.0)
    assert abs(d["delay_samples"] - delay) <= rc.ENV_HOP, d


def test_locator_sign_silence_and_range(phrase):
    d = rc.locate_delay(phrase, delayed(phrase, -4000), SR, max_delay_s=0.5)
    assert abs(d["delay_samples"] + 4000) <= HOP  # y earlier than ref: negative
    z = np.zeros(SR * 2, np.float32)
    assert rc.locate_delay(z, z, SR)["delay_s"] is None  # flat envelopes: nothing to locate
    # a delay beyond the search range is not found (no lag in range correlates well enough)
    far = rc.locate_delay(phrase, delayed(phrase, SR), SR, max_delay_s=0.3)
    assert far["delay_s"] is None or abs(far["delay_samples"] - SR) > HOP
    # unrelated envelopes (steady noise): no figure, the weak peak correlation is still given
    noise = np.random.default_rng(2).standard_normal(len(phrase)).astype(np.float32)
    d = rc.locate_delay(phrase, noise, SR)
    assert d["delay_s"] is None and d["delay_samples"] is None and d["corr"] < rc.MIN_CORR


def test_lagged_pearson_matches_direct_computation():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(200), rng.standard_normal(200)
    b[7:] += 2 * a[:-7]
    lags, r = rc.lagged_pearson(a, b, 10)
    for k, rk in zip(lags, r, strict=True):
        x, y = (a[: len(a) - k], b[k:]) if k >= 0 else (a[-k:], b[: len(b) + k])
        assert rk == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-9)
    assert lags[np.argmax(r)] == 7


def test_window_delays_and_constancy(phrase):
    y = delayed(np.tile(phrase, 3), 6000)  # 36 s, 11 s windows
    w = rc.window_delays(np.tile(phrase, 3), y, SR, window_s=11.0, max_delay_s=0.5)
    assert [round(x["start_s"]) for x in w] == [0, 11, 22]  # the 3 s rest merged into the last
    assert w[-1]["seconds"] == pytest.approx(14.0, abs=0.01)
    assert all(abs(x["delay_s"] * SR - 6000) <= HOP for x in w)
    c = rc.constancy(w, block_s=0.25)
    assert c["within_one_block"] and c["spread_s"] < 2 * HOP / SR and c["unlocated"] == 0
    drift = [{"delay_s": v} for v in (0.30, 0.31, 0.62)]
    assert rc.constancy(drift, block_s=0.25)["within_one_block"] is False
    assert rc.constancy([{"delay_s": None}], 0.25)["unlocated"] == 1


def test_align_moves_the_output_back():
    x = np.arange(1, 11, dtype=np.float32)
    assert rc.align(delayed(x, 3), 3, 10)[:7].tolist() == x[:7].tolist()
    assert rc.align(x, -2, 5).tolist() == [0, 0, 1, 2, 3]
    assert len(rc.align(x, 0, 20)) == 20


def test_block_stats_counts_blocks_over_budget():
    t = [0.010] * 97 + [0.300, 0.200, 0.250]
    s = rc.block_stats(t, block_s=0.25)
    assert s["blocks"] == 100 and s["underruns"] == 1  # 0.25 is on budget, 0.30 is over
    assert s["p50_ms"] == pytest.approx(10.0) and s["max_ms"] == pytest.approx(300.0)
    assert 10.0 < s["p99_ms"] <= 300.0
    assert rc.block_stats([], 0.1)["blocks"] == 0


@pytest.mark.parametrize(("limit", "start", "smallest"), [
    (0.12, 0.25, 0.15),   # holds at the start: walk down to the last that holds
    (0.30, 0.25, 0.35),   # fails at the start: walk up
    (9.00, 0.25, None),   # nothing holds
    (0.00, 0.25, 0.10),   # everything holds
])  # fmt: skip
def test_smallest_block_search(limit, start, smallest):
    calls = []

    def underruns(b):
        calls.append(b)
        return 0 if b >= limit else 3

    res = rc.smallest_block(underruns, [0.5, 0.1, 0.15, 0.2, 0.25, 0.35], start)
    assert res["smallest_s"] == smallest
    assert len(calls) == len(set(calls)) == len(res["tried"])  # each block run once


def test_build_input_concatenates_and_repeats(tmp_path):
    (tmp_path / "vocadito").mkdir()
    (tmp_path / "sms-tools").mkdir()
    a = 0.5 * np.sin(2 * np.pi * 220 * np.arange(22050) / 22050).astype(np.float32)
    sf.write(tmp_path / "vocadito" / "vocadito_1.wav", a, 22050)  # 1 s at 22.05 kHz: resampled
    sf.write(tmp_path / "sms-tools" / "singing-female.wav", np.full(SR // 2, 0.1, np.float32), SR)
    wav, seg = rc.build_input(tmp_path, 4.0)
    assert wav.dtype == np.float32 and len(wav) == 4 * SR
    assert [s["file"] for s in seg][:3] == ["vocadito/vocadito_1.wav", "sms-tools/singing-female.wav",
                                            "vocadito/vocadito_1.wav"]  # fmt: skip
    assert seg[1]["start_s"] == pytest.approx(1.0 + rc.GAP_S, abs=1e-3)
    gap = wav[int(1.05 * SR) : int(1.25 * SR)]
    assert not gap.any()  # silence between recordings
    assert abs(wav[0]) < 1e-3 and np.max(np.abs(wav[: SR // 2])) > 0.4  # faded in, then loud
    assert rc.files_used(seg) == pytest.approx(
        {"vocadito/vocadito_1.wav": 2.0, "sms-tools/singing-female.wav": 1.0}
    )
    with pytest.raises(FileNotFoundError):
        rc.build_input(tmp_path / "vocadito", 1.0)
    assert rc.find_data(tmp_path) == tmp_path and rc.find_data(tmp_path / "nope") is None


@pytest.mark.parametrize("script", ["bench/realtime_speed.py", "bench/realtime_quality.py"])
def test_scripts_without_data_exit_0_with_a_message(tmp_path, script):
    proc = run_script([ROOT / script, "--data", tmp_path / "missing", "--seconds", "5"], tmp_path)
    assert "no recordings" in proc.stdout + proc.stderr
    assert not (tmp_path / "bench").exists()


@pytest.mark.parametrize(("script", "args", "excerpt"), [
    ("bench/realtime_speed.py", ["--configs", "huge"], "--configs: unknown config 'huge'"),
    ("bench/realtime_speed.py", ["--precisions", "fp16"], "--precisions: unknown precision 'fp16'"),
    ("bench/realtime_speed.py", ["--f0", "yin"], "--f0: unknown f0 predictor 'yin'"),
    ("bench/realtime_speed.py", ["--seconds", "0"], "--seconds: must be > 0"),
    ("bench/realtime_quality.py", ["--seconds", "-3"], "--seconds: must be > 0"),
    ("bench/realtime_speed.py", ["--template_dir", "nope"], "nope: --template_dir folder not found"),
    ("bench/realtime_quality.py", ["--target_bank", "nope"], "nope: --target_bank folder not found"),
])  # fmt: skip
def test_scripts_reject_bad_flags(tmp_path, script, args, excerpt):
    proc = run_script([ROOT / script, *args], tmp_path, check=False)
    assert proc.returncode == (1 if "not found" in excerpt else 2), proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and excerpt in lines[0]


def test_quality_metrics_on_a_delayed_copy_and_a_click(tmp_path):
    from bench import realtime_quality as rq
    from common.synthetic import write_dataset

    wav, _ = sing(3.0, DEMO_SINGERS[0], seed=5, silence=False)
    d = 13000
    out = delayed(wav, d)
    joins = [(d + k * 11025) / SR for k in range(1, 4)]
    bank = write_dataset(tmp_path, DEMO_SINGERS[:1], files_per_singer=2, duration=2.0)
    m = rq.metrics(wav, out, joins, d, bank, "pm", source=wav)
    assert m["f0_corr"] > 0.99 and m["vuv_f1"] > 0.95 and m["loudness_corr"] > 0.99, m
    assert m["f0_corr_source_stream"] > 0.99 and m["loudness_corr_source_offline"] > 0.99
    assert abs(m["secs_diff"]) < 0.02 and m["secs_target_stream"] > 0.5
    assert m["joins"] == 3 and m["clicks_at_joins"] == 0 == m["clicks_offline_same_places"]
    clicked = out.copy()
    j = int(round(joins[1] * SR))
    clicked[j:] = np.clip(clicked[j:] + 0.6, -1, 1)  # a step right at the second join
    m = rq.metrics(wav, clicked, joins, d, bank, "pm")
    assert m["clicks_at_joins"] == 1 and m["clicks_offline_same_places"] == 0, m
    assert rq.goal_met("clicks_at_joins", 1) is False and rq.goal_met("secs_diff", -0.01) is True
    assert rq.goal_met("f0_corr", None) is None
