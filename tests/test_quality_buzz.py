"""Hop buzz, f0 on the frame rate, loud frames gone silent (quality/buzz.py, quality/loudness.py)
on constructed signals, and the F0 corr spread of bench/quality_recipe.py's curve."""

import json
import math

import numpy as np
import pytest
import soundfile as sf

from common.audio import resample
from quality import ANALYSIS_SR
from quality.buzz import DECODER_FRAME_RATE, f0_on_frame_rate, hop_buzz
from quality.loudness import loud_silent
from tests.conftest import ROOT, run_script

SR = 44100
NOTES_S = ((0.1, 1.0), (1.6, 2.8), (3.5, 3.95))
"""Where the constructed phrase sings [s]; silent elsewhere (4 s in all)."""
MUTED_S = NOTES_S[1]


def phrase(f0: float, seed: int, sr: int = SR, noise: float = 1e-3):
    """A 10-harmonic tone at ``f0`` [Hz] (peak about 0.9) sung in :data:`NOTES_S` with 20 ms
    fades, over white noise of RMS ``noise`` (-60 dBFS) → ``(wav [4·sr], envelope [4·sr])``."""
    t = np.arange(4 * sr) / sr
    tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 11))
    env = np.zeros_like(t)
    for a, b in NOTES_S:
        env[int(a * sr) : int(b * sr)] = 1.0
    fade = np.hanning(int(0.02 * sr))
    env = np.clip(np.convolve(env, fade / fade.sum(), "same"), 0.0, 1.0)
    rng = np.random.default_rng(seed)
    return (0.3 * tone * env + noise * rng.standard_normal(len(t))).astype(np.float32), env


def click_train(n: int, amplitude: float) -> np.ndarray:
    """One click every 512 samples (44.1 kHz / 512 = 86.13 Hz, the decoder's frame rate)."""
    x = np.zeros(n, np.float32)
    x[::512] = amplitude
    return x


@pytest.fixture(scope="module")
def case():
    """Source: the tone at 220 Hz. Outputs (transpose -12): clean at 110 Hz with other noise;
    the same plus a click train (amplitude 0.2) in the silences; the same with the middle note
    muted. Every signal at 16 kHz as eval.py reads it, f0 tracked by FCPE."""
    from quality.pitch import PitchTracker

    tracker = PitchTracker("fcpe")
    src, env = phrase(220.0, seed=0)
    clean, _ = phrase(110.0, seed=1)
    buzz = clean + click_train(len(clean), 0.2) * (env < 0.01)
    muted = clean.copy()
    muted[int(MUTED_S[0] * SR) : int(MUTED_S[1] * SR)] = 0.0
    c = {"native": {"source": src, "clean": clean, "env": env}}
    for name, wav in (("source", src), ("clean", clean), ("buzz", buzz), ("muted", muted)):
        c[name] = resample(wav, SR, ANALYSIS_SR)
        c[name + "_f0"] = tracker(c[name])
    return c


def test_clean_tone_has_no_hop_buzz(case):
    m = hop_buzz(case["source"], case["clean"], case["source_f0"])
    assert m["hop_buzz_windows"] >= 20  # the two silences (0.6 s, 0.7 s) hold that many
    assert abs(m["hop_buzz_db"]) < 1.5, m  # noise against noise
    assert abs(m["hop_buzz_source_db"]) < 1.5, m
    same = hop_buzz(case["source"], case["source"], case["source_f0"])
    assert same["hop_buzz_db"] == 0.0
    on = f0_on_frame_rate(case["source_f0"], case["clean_f0"], transpose=-12)
    assert on == {"f0_on_frame_rate": 0.0, "f0_on_frame_rate_frames": 0}
    assert loud_silent(case["source"], case["clean"]) == 0.0


def test_click_train_in_silences_is_hop_buzz(case):
    m = hop_buzz(case["source"], case["buzz"], case["source_f0"])
    assert m["hop_buzz_db"] > 15, m
    assert m["hop_buzz_output_db"] > 15 and abs(m["hop_buzz_source_db"]) < 1.5, m
    # FCPE reads 86 Hz near the notes' edges, where the clicks stand out most.
    on = f0_on_frame_rate(case["source_f0"], case["buzz_f0"], transpose=-12)
    assert on["f0_on_frame_rate"] > 0.05, on
    locked = case["buzz_f0"][(case["buzz_f0"] > 0) & (case["source_f0"] == 0)]
    # Voiced where the source is not: nearly all on 86.13 Hz (a few are the output's note edges).
    assert np.mean(np.abs(1200 * np.log2(locked / DECODER_FRAME_RATE)) < 50) > 0.8, locked
    # A faint train (clicks of 0.01: 20 dB over the -60 dBFS noise) still shows, less.
    clean, env = case["native"]["clean"], case["native"]["env"]
    faint = resample(clean + click_train(len(clean), 0.01) * (env < 0.01), SR, ANALYSIS_SR)
    assert (
        1.5 < hop_buzz(case["source"], faint, case["source_f0"])["hop_buzz_db"] < m["hop_buzz_db"]
    )
    # Where the source is voiced the comb is not looked at: a train over the notes only.
    over_notes = resample(clean + click_train(len(clean), 0.2) * (env > 0.99), SR, ANALYSIS_SR)
    assert abs(hop_buzz(case["source"], over_notes, case["source_f0"])["hop_buzz_db"]) < 1.5


def test_f0_on_frame_rate_counts_only_what_the_source_does_not_sing():
    """Constructed tracks: 10 voiced output frames, 3 of them locked to the frame rate where
    the source is not."""
    fr = DECODER_FRAME_RATE
    src = np.zeros(12)
    out = np.zeros(12)
    out[0], src[0] = fr * 2 ** (40 / 1200), 0.0  # 40 cents sharp of 86.13 Hz, source silent: counts
    out[1], src[1] = 2 * fr, 0.0  # the octave above (172.27 Hz), source silent: counts
    out[2], src[2] = fr, 300.0  # on the frame rate where the source sings 150 Hz: counts
    out[3], src[3] = 87.31, 174.61  # F2 sung where the source sings F3 (-12 st): does not
    out[4], src[4] = fr * 2 ** (60 / 1200), 0.0  # 60 cents off: does not
    out[5], src[5] = 3 * fr, 0.0  # the third multiple is not a lock: does not
    out[6:10] = 110.0
    src[6:10] = 220.0
    src[10] = 2 * fr  # voiced in the source only: not an output frame
    m = f0_on_frame_rate(src, out, transpose=-12)
    assert m == {"f0_on_frame_rate": pytest.approx(3 / 10), "f0_on_frame_rate_frames": 3}
    assert f0_on_frame_rate(src, np.zeros(12))["f0_on_frame_rate"] is None
    # Another decoder's frame rate (32 kHz / 320 = 100 Hz): nothing here sits on it.
    assert f0_on_frame_rate(src, out, -12, frame_rate=100.0)["f0_on_frame_rate_frames"] == 0
    with pytest.raises(ValueError, match="outside 70..2000 Hz"):
        f0_on_frame_rate(src, out, frame_rate=20.0)


def test_loud_silent_on_a_muted_note(case):
    share = loud_silent(case["source"], case["muted"])
    voiced_s = sum(b - a for a, b in NOTES_S)
    muted_s = MUTED_S[1] - MUTED_S[0]
    # 1.2 s of 2.55 s muted = 0.471; the 40 ms frames at the note edges (loud in the source,
    # half silent in the output) take about 0.04 off.
    assert share == pytest.approx(muted_s / voiced_s, abs=0.05)
    assert loud_silent(case["source"], np.zeros_like(case["source"])) == 1.0
    assert loud_silent(case["source"], 0.1 * case["clean"]) == 0.0  # 20 dB quieter, not silent
    # 26 dB quieter: a note-edge frame or so falls under the -60 dBFS floor.
    assert loud_silent(case["source"], 0.05 * case["clean"]) < 0.01
    assert loud_silent(np.zeros(16000), case["clean"][:16000]) is None
    # a note that drops out under the output's own noise: the middle note 26 dB down (not under
    # the 40 dB / -60 dBFS floors) while the other notes keep their level is counted
    dropped = case["clean"].copy()
    a, b = (int(x * ANALYSIS_SR) for x in MUTED_S)
    dropped[a:b] *= 0.05
    assert loud_silent(case["source"], dropped) == pytest.approx(share, abs=0.03)
    dropped[a:b] *= 4  # 14 dB down: kept (a quieter note, not a lost one)
    assert loud_silent(case["source"], dropped) < 0.05


def test_evaluate_reports_buzz_columns(tmp_path):
    """The wiring: evaluate() on files, the source at 22.05 kHz and the output at 44.1 kHz
    (both are read at 16 kHz), per-file keys, the mean, the table's columns."""
    from quality.evaluate import EvalError, evaluate

    src, env = phrase(220.0, seed=0)
    buzz = phrase(110.0, seed=1)[0] + click_train(len(src), 0.2) * (env < 0.01)
    sf.write(tmp_path / "src.wav", resample(src, SR, 22050), 22050)
    sf.write(tmp_path / "out.flac", buzz, SR)
    items = [{"output": str(tmp_path / "out.flac"), "source": str(tmp_path / "src.wav"),
              "transpose": -12},
             {"output": str(tmp_path / "out.flac"), "source": str(tmp_path / "src.wav"),
              "transpose": -12, "frame_rate_hz": 10}]  # fmt: skip
    report = evaluate(items, tmp_path / "ev", f0_predictor="fcpe", asr=False, dnsmos=False,
                      plots=False, progress=False)  # fmt: skip
    f, bad = report["files"]
    assert f["frame_rate_hz"] == pytest.approx(86.1328125)
    assert f["hop_buzz_db"] > 15 and f["hop_buzz_windows"] >= 20
    assert f["f0_on_frame_rate"] > 0.05 and f["loud_silent"] == 0.0
    assert "frame_rate_hz: frame rate 10 Hz is outside 70..2000 Hz" in bad["error"]
    assert report["aggregate"]["hop_buzz_db"] == pytest.approx(f["hop_buzz_db"])
    table = (tmp_path / "ev" / "eval_table.txt").read_text()
    header, _, row = table.splitlines()[:3]
    assert header.split()[-3:] == ["dB", "f0@frame", "loud→sil"]  # "buzz dB" is two words
    assert row.split()[-1] == "0.0%" and row.split()[-3].startswith("+")
    with pytest.raises(EvalError, match="--frame_rate: frame rate nan Hz is outside"):
        evaluate(items, tmp_path / "ev2", frame_rate_hz=math.nan, progress=False)


def test_eval_cli_rejects_a_bad_frame_rate(tmp_path):
    proc = run_script([ROOT / "eval.py", "-o", "a.wav", "-s", "b.wav", "--out", tmp_path,
                       "--frame_rate", "20"], cwd=tmp_path, check=False)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--frame_rate: frame rate 20 Hz is outside 70..2000 Hz" in proc.stderr


# ------------------------------------------------------------------ the recipe's F0 corr spread


def test_spread_of_the_last_five():
    from bench.recipe_curve import spread

    # The recipe's self F0 corr at 0.4 … 70.9 CPU minutes (README): the last five are
    # 0.90, 0.86, 0.95, 0.79, 0.93.
    assert spread([0.98, 0.90, 0.86, 0.95, 0.79, 0.93]) == pytest.approx(0.16)
    assert spread([0.98, 0.90, 0.86, 0.95, 0.79, 0.93], n=2) == pytest.approx(0.14)
    assert spread([0.9, None, math.nan, 0.8]) == pytest.approx(0.1)  # missing scores skipped
    assert spread([0.9]) is None and spread([]) is None and spread([None, 0.5]) is None


def test_curve_rows_carry_the_spread(tmp_path):
    """Rows added one evaluation at a time, as curve_point does: each gets the spread over the
    last five F0 corr values up to itself; the table and the plot show them."""
    from bench.recipe_curve import format_curve, read_curve, with_spread
    from bench.train_demo_voice import plot_curve

    self_corr = [0.98, 0.90, 0.86, 0.95, 0.79, 0.93]
    cross_corr = [0.99, 0.87, 0.73, None, 0.80, 0.81]
    path = tmp_path / "curve.jsonl"
    for i, (s, c) in enumerate(zip(self_corr, cross_corr)):
        row = {"step": 100 * (i + 1), "cpu_minutes": 10.0 * i, "self_f0_corr": s,
               "cross_f0_corr": c, "cross_secs_target": 0.6, "cross_secs_source": 0.5}  # fmt: skip
        row = with_spread(read_curve(path), row)
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
    rows = read_curve(path)
    assert [r["self_f0_corr_spread5"] for r in rows] == pytest.approx(
        [None, 0.08, 0.12, 0.12, 0.19, 0.16]
    )
    assert [r["cross_f0_corr_spread5"] for r in rows] == pytest.approx(
        [None, 0.12, 0.26, 0.26, 0.26, 0.14]
    )
    # A row re-scored at a step already in the curve does not count itself twice.
    again = with_spread(rows, dict(rows[2], self_f0_corr=0.5))
    assert again["self_f0_corr_spread5"] == pytest.approx(0.48)
    lines = format_curve(rows).splitlines()
    assert lines[0].split()[:4] == ["step", "CPU", "min", "F0"]
    assert lines[1].split()[4] == "-" and lines[-1].split()[4:6] == ["0.160", "0.140"]
    assert lines[4].split()[3] == "-"  # the missing cross score
    plot_curve(path, "cpu_minutes", "training CPU minutes")
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
