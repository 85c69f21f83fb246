"""slice_inference's slicing, padding, forced clips, crossfades and speaker-mix bookkeeping, with
a stand-in model (Svc.infer replaced), so only the assembly is under test."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

from common.audio import resample
from inference.infer_tool import Svc, pad_array, split_list_by_n

SR = 44100


def song(seconds=9.0, pause=(6.0, 7.0), seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    wav = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.02 * rng.standard_normal(t.size)).astype(
        np.float32
    )
    if pause:
        wav[int(pause[0] * SR) : int(pause[1] * SR)] = 0
    return wav


def stub_svc(model=None, spk2id=None):
    """An Svc whose infer returns ``model(padded_input, call_index)`` (default: the input)."""
    svc = Svc.__new__(Svc)
    svc.target_sample, svc.hop_size, svc.max_chunk_seconds = SR, 512, 30.0
    svc.spk2id = spk2id or {"a": 0, "b": 1}
    svc.n_speakers = len(svc.spk2id)
    svc.timings, svc.dev = {}, torch.device("cpu")
    svc.net_g_ms = SimpleNamespace(character_mix=True)
    svc.spk_mix_enable, svc.config_path = True, "config.json"
    svc.calls = []

    def infer(spk, tran, raw, **kw):
        wav = np.asarray(raw, dtype=np.float32)
        n_frames = len(wav) // 512
        svc.calls.append({"n": len(wav), "frames": n_frames, "frame": kw["frame"], "spk": spk,
                          "spk_mix": kw["spk_mix"]})  # fmt: skip
        y = wav if model is None else model(wav, len(svc.calls) - 1)
        return torch.from_numpy(np.ascontiguousarray(y)), len(y), n_frames

    svc.infer = infer
    return svc


def run(svc, wav, **kw):
    args = dict(
        spk="a", tran=0, slice_db=-40, cluster_infer_ratio=0, auto_predict_f0=False, noice_scale=0.4
    )
    args.update(kw)
    return svc.slice_inference(wav, **args)


def test_helpers():
    np.testing.assert_array_equal(pad_array(np.ones(3), 6), [0, 1, 1, 1, 0, 0])
    assert len(pad_array(np.ones(9), 6)) == 6  # cut, not returned longer (§18.6)
    parts = split_list_by_n(np.arange(10), 4, 1)
    assert [list(p) for p in parts] == [[0, 1, 2, 3], [3, 4, 5, 6, 7], [7, 8, 9]]


@pytest.mark.parametrize(
    "kw",
    [{}, {"pad_seconds": 0}, {"clip_seconds": 2.0}, {"clip_seconds": 2.0, "lg_num": 0.5},
     {"clip_seconds": 1.3, "lg_num": 0.4, "lgr_num": 1.0}, {"clip_seconds": 1.3, "lg_num": 0.4, "lgr_num": 0.0},
     {"clip_seconds": 2.0, "lg_num": 0.3, "pad_seconds": 0.2}],
)  # fmt: skip
def test_identity_model_reproduces_the_input(kw):
    """With a model that returns its input, every slice lands exactly where it came from."""
    wav = song()
    out = run(stub_svc(), wav, **kw)
    assert out.dtype == np.float32 and out.shape == wav.shape
    np.testing.assert_allclose(out, wav, atol=1e-6)


def test_crossfade_is_in_output_samples_and_centred(tmp_path):
    """Clip k>0 starts lg early; the blend of r = lg·lgr samples sits in the middle of the overlap.

    The input is at 16 kHz: the reference used input-rate sizes on 44.1 kHz output (§18.6);
    here the ramp is exactly lg·lgr·44100 samples long and in place.
    """
    wav16 = np.full(16000 * 4, 0.5, np.float32)  # 4 s, no silence → one chunk
    clip, lg, lgr = 1.0, 0.4, 0.5
    svc = stub_svc(model=lambda w, i: np.full_like(w, float(i + 1)))
    path = tmp_path / "x.wav"
    sf.write(path, wav16, 16000, subtype="FLOAT")
    out = run(svc, path, clip_seconds=clip, lg_num=lg, lgr_num=lgr)
    assert len(out) == len(resample(wav16, 16000, SR))
    lg_n, r = int(lg * SR), int(int(lg * SR) * lgr)
    cl = (lg_n - r) // 2
    start = int(clip * SR)  # clip 1 begins at 1 s; its piece starts lg earlier
    a = start - lg_n + cl
    assert np.all(out[:a] == 1.0)
    np.testing.assert_allclose(out[a : a + r], 1.0 + np.linspace(0, 1, r), atol=1e-6)
    assert np.all(out[a + r : a + r + 1000] == 2.0)
    # each later clip was converted with its lg prefix and its padding
    pad = int(0.5 * SR)
    assert [c["n"] for c in svc.calls[:2]] == [start + 2 * pad, start + lg_n + 2 * pad]


def test_silence_becomes_zeros_and_lengths_add_up():
    wav = song(seconds=9.0, pause=(6.0, 9.0))  # trailing 3 s pause
    svc = stub_svc(model=lambda w, i: np.ones_like(w))
    out = run(svc, wav)
    assert out.shape == wav.shape
    assert np.all(out[int(6.3 * SR) :] == 0) and np.all(out[: int(5.9 * SR)] == 1)


def test_long_chunks_are_clipped_to_bound_memory():
    wav = song(seconds=7.0, pause=None)
    svc = stub_svc()
    svc.max_chunk_seconds = 2.0
    out = run(svc, wav)
    assert len(svc.calls) == 4 and max(c["n"] for c in svc.calls) <= int(2.5 * SR) + SR
    np.testing.assert_allclose(out, wav, atol=1e-6)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="crossfade"):
        run(stub_svc(), song(3, None), clip_seconds=1.0, lg_num=1.0)
    with pytest.raises(ValueError, match="retain"):
        run(stub_svc(), song(3, None), lgr_num=1.5)


def test_speaker_mix_frames_are_exact():
    wav = song()
    svc = stub_svc()
    mix = {0: [[0.0, 0.5, 1, 0], [0.5, 1, 0, 0]], "b": [[0.0, 1.0, 0, 1]]}
    out = run(svc, wav, spk=mix, use_spk_mix=True, clip_seconds=2.5, lg_num=0.5)
    assert out.shape == wav.shape
    matrix = svc.calls[0]["spk"]
    assert matrix.shape[0] == 2
    # slices consume the matrix columns in order, without gaps past the silences
    frames = [c["frame"] for c in svc.calls]
    assert frames == sorted(frames)
    last = svc.calls[-1]
    assert last["frame"] + last["frames"] <= matrix.shape[1]
    torch.testing.assert_close(matrix.sum(0), torch.ones(matrix.shape[1]))
    assert matrix[0, 0] == 1 and matrix[1, 0] == 0  # speaker 0 starts alone
    assert matrix[1, -1] > 0.99  # speaker 1 ends alone


def test_build_spk_mix_rules():
    svc = stub_svc()
    m = svc.build_spk_mix({0: [[0.0, 1.0, 0.0, 0.0]], 1: [[0.0, 1.0, 0.0, 0.0]]}, 10)
    torch.testing.assert_close(m, torch.full((2, 10), 0.5))  # all zero → uniform
    m = svc.build_spk_mix(
        {0: [[0.0, 0.5, 2.0, 2.0], [0.5, 1.0, 0, 0]], 1: [[0.0, 1.0, 1.0, 1.0]]}, 10
    )
    torch.testing.assert_close(m[0], torch.tensor([2 / 3] * 5 + [0.0] * 5))
    with pytest.raises(ValueError, match="every speaker"):
        svc.build_spk_mix({0: [[0.0, 1.0, 1.0, 1.0]]}, 10)
    with pytest.raises(ValueError, match="contiguous"):
        svc.build_spk_mix({0: [[0.0, 0.4, 1, 1], [0.5, 1.0, 1, 1]], 1: [[0.0, 1.0, 1, 1]]}, 10)
    with pytest.raises(ValueError, match=">= 0"):
        svc.build_spk_mix({0: [[0.0, 1.0, -1, 1]], 1: [[0.0, 1.0, 1, 1]]}, 10)
    with pytest.raises(ValueError, match="start at 0"):
        svc.build_spk_mix({0: [[0.1, 1.0, 1, 1]], 1: [[0.0, 1.0, 1, 1]]}, 10)


def test_single_speaker_mix_falls_back_to_that_speaker():
    """§18.8: the reference indexed dict_keys here and raised."""
    svc = stub_svc(spk2id={"solo": 0})
    run(svc, song(3, None), spk={0: [[0.0, 1.0, 1, 1]]}, use_spk_mix=True)
    assert svc.calls[0]["spk"] == "solo" and svc.calls[0]["spk_mix"] is False


def test_speaker_ids():
    svc = stub_svc()
    assert svc.speaker_id("b") == 1 and svc.speaker_id(1) == 1 and svc.speaker_id("0") == 0
    for bad in (2, -1, "nobody", True):  # the reference accepted id == n (§18)
        with pytest.raises(ValueError, match="not in the speaker list"):
            svc.speaker_id(bad)
