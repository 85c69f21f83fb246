"""Silence slicer (inference/slicer.py, sovits-4.1.md §15.1) on synthetic audio with silences."""

from __future__ import annotations

import numpy as np
import pytest

from inference import slicer

SR = 44100


def tone(seconds: float, f: float = 220.0, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), np.float32)


def spans(chunks: dict) -> list[tuple[bool, int, int]]:
    out = []
    for c in chunks.values():
        a, b = (int(x) for x in c["split_time"].split(","))
        out.append((c["slice"], a, b))
    return out


def check_tiling(chunks: dict, n: int) -> None:
    """Chunks are ordered, contiguous and cover [0, n)."""
    s = spans(chunks)
    assert s[0][1] == 0 and s[-1][2] == n
    for (_, _, b), (_, a, _) in zip(s, s[1:]):
        assert a == b


def test_parameters_in_frames():
    sl = slicer.Slicer(SR, threshold=-40)
    assert sl.hop_size == 882 and sl.win_size == 3528
    assert sl.min_length == 250 and sl.min_interval == 15 and sl.max_sil_kept == 250
    assert sl.threshold == pytest.approx(0.01)
    with pytest.raises(ValueError):
        slicer.Slicer(SR, min_length=100, min_interval=300)


def test_no_silence_is_one_chunk():
    wav = tone(3.0)
    chunks = slicer.cut(wav, SR, db_thresh=-40)
    assert spans(chunks) == [(False, 0, len(wav))]


def test_all_silence_is_cut_as_trailing_silence():
    wav = silence(2.0)
    s = spans(slicer.cut(wav, SR, db_thresh=-40))
    assert [x[0] for x in s] == [True] and s[0][1] == 0 and s[0][2] == len(wav)


def test_trailing_silence_is_cut():
    wav = np.concatenate([tone(2.0), silence(1.0)])
    chunks = slicer.cut(wav, SR, db_thresh=-40)
    check_tiling(chunks, len(wav))
    s = spans(chunks)
    assert [x[0] for x in s] == [False, True]
    assert 2.0 * SR - 4 * 882 <= s[1][1] <= 2.0 * SR + 4 * 882  # cut near the end of the sound


def test_short_middle_silence_splits_inside_it_after_min_length():
    # a 1 s pause after 6 s of sound: cut (at the quietest frame) because the clip is >= 5 s;
    # a run of <= max_sil_kept gives a zero-length silence, i.e. a plain split point
    wav = np.concatenate([tone(6.0), silence(1.0), tone(2.0, f=330)])
    chunks = slicer.cut(wav, SR, db_thresh=-40)
    check_tiling(chunks, len(wav))
    parts = slicer.chunks2audio(wav, chunks)
    voiced = [p for s, p in parts if not s]
    assert len(voiced) == 2
    split = len(voiced[0])
    assert 6.0 * SR <= split <= 7.0 * SR


def test_pause_before_min_length_is_not_cut():
    wav = np.concatenate([tone(2.0), silence(1.0), tone(2.0)])
    s = spans(slicer.cut(wav, SR, db_thresh=-40))
    assert s == [(False, 0, len(wav))]


def test_long_leading_and_middle_silences():
    wav = np.concatenate([silence(6.0), tone(6.0), silence(12.0), tone(3.0)])
    chunks = slicer.cut(wav, SR, db_thresh=-40)
    check_tiling(chunks, len(wav))
    s = spans(chunks)
    assert [x[0] for x in s] == [True, False, True, False]
    # a leading silence of 6 s (> max_sil_kept) is cut so that 5 s of it stay before the sound
    assert 0.9 * SR <= s[0][2] <= 1.1 * SR
    # a 12 s pause (> 2·max_sil_kept) is removed but for 5 s before the next sound
    assert 12.0 * SR <= s[2][1] <= 12.2 * SR and 18.8 * SR <= s[2][2] <= 19.1 * SR


def test_threshold_decides_what_is_silence():
    t = np.arange(int(1.5 * SR)) / SR
    quiet = (0.003 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)  # about -53 dBFS RMS
    wav = np.concatenate([tone(6.0), quiet, tone(1.0)])
    assert len(slicer.cut(wav, SR, db_thresh=-40)) > 1
    assert len(slicer.cut(wav, SR, db_thresh=-60)) == 1


def test_chunks2audio_drops_empty_and_keeps_order():
    wav = np.arange(10, dtype=np.float32)
    chunks = {"0": {"slice": False, "split_time": "0,4"}, "1": {"slice": True, "split_time": "4,4"},
              "2": {"slice": True, "split_time": "4,10"}}  # fmt: skip
    out = slicer.chunks2audio(wav, chunks)
    assert [s for s, _ in out] == [False, True]
    np.testing.assert_array_equal(np.concatenate([a for _, a in out]), wav)


def test_tiny_input_is_one_chunk():
    wav = tone(0.004)  # 176 samples (<= min_length, which the reference compares in samples)
    assert spans(slicer.cut(wav, SR)) == [(False, 0, len(wav))]
