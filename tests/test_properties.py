"""Property-based tests (hypothesis): slicer, f0 post-processing, spkmix parsing, audio reading."""

from __future__ import annotations

import math

import numpy as np
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.audio import AudioError, load_audio
from common.errors import UserError
from inference.cli import load_spk_mix_map
from inference.slicer import Slicer, chunks2audio
from modules.f0.base import resize_nearest
from modules.pitch import f0_to_coarse, interpolate_f0, resize_f0

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- slicer ---------------------------------------------------------------------------------------
@st.composite
def waveforms(draw):
    """Alternating loud / quiet segments at 8 kHz (short, so many examples run fast)."""
    sr = 8000
    n_seg = draw(st.integers(1, 6))
    parts = []
    for i in range(n_seg):
        n = draw(st.integers(1, sr))  # up to 1 s each
        amp = draw(st.sampled_from([0.0, 1e-4, 0.3, 0.9])) if i % 2 else 0.5
        rng = np.random.default_rng(draw(st.integers(0, 2**16)))
        parts.append((amp * rng.standard_normal(n)).astype(np.float32))
    return sr, np.concatenate(parts)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(waveforms(), st.sampled_from([-60.0, -40.0, -20.0]), st.sampled_from([300, 1000, 5000]))
def test_slicer_partitions_the_input(data, threshold, min_length):
    """Chunks are contiguous, non-overlapping, cover every sample once, and alternate kinds."""
    sr, wav = data
    chunks = Slicer(sr=sr, threshold=threshold, min_length=min_length).slice(wav)
    bounds = [tuple(int(x) for x in c["split_time"].split(",")) for c in chunks]
    assert bounds[0][0] == 0 and bounds[-1][1] == len(wav)
    for (_, end), (start, _) in zip(bounds, bounds[1:]):
        assert end == start
    assert all(b <= e for b, e in bounds)
    pieces = chunks2audio(wav, chunks)
    assert np.array_equal(np.concatenate([p for _, p in pieces]), wav)
    kinds = [
        c["slice"] for c in chunks if c["split_time"].split(",")[0] != c["split_time"].split(",")[1]
    ]
    assert all(a != b or not a for a, b in zip(kinds, kinds[1:]))  # no two silences in a row


# -- f0 post-processing ---------------------------------------------------------------------------
f0_tracks = st.lists(
    st.one_of(st.just(0.0), st.floats(30.0, 1500.0), st.sampled_from([math.nan, math.inf, -5.0])),
    min_size=1,
    max_size=300,
)


@FAST
@given(f0_tracks)
def test_interpolate_f0_fills_gaps_within_the_voiced_range(track):
    f0 = np.array(track)
    out, uv = interpolate_f0(f0)
    assert out.shape == f0.shape and uv.shape == f0.shape
    assert np.isfinite(out).all()
    voiced = np.isfinite(f0) & (f0 > 0)
    assert np.array_equal(uv, voiced.astype(np.float32))
    if voiced.any():
        v = f0[voiced]
        assert out.min() >= v.min() - 1e-9 and out.max() <= v.max() + 1e-9
        assert np.allclose(out[voiced], v)  # voiced frames keep their value
    else:
        assert not out.any()


@FAST
@given(f0_tracks, st.integers(1, 400))
def test_resize_f0_and_nearest_keep_length_and_range(track, n):
    f0 = np.nan_to_num(np.array(track), nan=0.0, posinf=0.0, neginf=0.0).clip(min=0)
    lin = resize_f0(f0, n)
    near = resize_nearest(f0.astype(np.float32), n)
    assert lin.shape == (n,) and near.shape == (n,)
    assert np.isfinite(lin).all() and lin.min() >= 0 and lin.max() <= f0.max() + 1e-6
    assert set(np.round(near, 3)) <= set(np.round(f0.astype(np.float32), 3))


@FAST
@given(st.lists(st.floats(0.0, 5000.0), min_size=1, max_size=200))
def test_f0_to_coarse_stays_in_the_256_bins(track):
    coarse = f0_to_coarse(torch.tensor([track], dtype=torch.float32))
    assert coarse.dtype == torch.long and coarse.shape == (1, len(track))
    assert int(coarse.min()) >= 0 and int(coarse.max()) <= 255
    f0 = torch.tensor(track)
    in_range = (f0 > 50) & (f0 < 1100)
    assert (coarse[0][in_range] >= 1).all()
    # monotone in the usable range
    srt = torch.sort(f0[in_range]).values
    c = f0_to_coarse(srt[None])[0]
    assert (c[1:] >= c[:-1]).all()


# -- spkmix parsing -------------------------------------------------------------------------------
@st.composite
def mix_maps(draw):
    n_spk = draw(st.integers(1, 4))
    out = {}
    for sid in range(n_spk):
        cuts = sorted(draw(st.sets(st.integers(1, 99), max_size=4)))
        edges = [0.0] + [c / 100 for c in cuts] + [1.0]
        out[sid] = [[edges[i], edges[i + 1], draw(st.integers(0, 3)), draw(st.integers(0, 3))]
                    for i in range(len(edges) - 1)]  # fmt: skip
    return out


class _MixOnly:
    """Just what Svc.build_spk_mix needs (speaker map, id lookup): no model to load."""

    def __init__(self, n):
        from inference.infer_tool import Svc

        self.spk2id = {f"s{i}": i for i in range(n)}
        self.n_speakers = n
        self.config_path = "config.json"
        self.speaker_id = Svc.speaker_id.__get__(self)
        self.build_spk_mix = Svc.build_spk_mix.__get__(self)
        self.speaker_name = Svc.speaker_name.__get__(self)
        self._diffusion_speaker = Svc._diffusion_speaker.__get__(self)
        self.diffusion_model = None


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(mix_maps(), st.integers(20, 300))
def test_spkmix_round_trip_and_weights(tmp_path, mix, n_frames):
    """Written as spkmix.py, read back as data; the weight matrix is finite, >= 0, columns sum to
    1 wherever some speaker has weight, and its shape is [n_spk, n_frames]."""
    path = tmp_path / "spkmix.py"
    path.write_text(f"spk_mix_map = {mix!r}\n")
    parsed, _ = load_spk_mix_map(path)
    assert parsed == mix
    svc = _MixOnly(len(mix))
    try:
        w = svc.build_spk_mix(parsed, n_frames)
    except UserError as e:  # e.g. a segment shorter than one frame: a one-line error
        assert "spkmix.py" in str(e) and "\n" not in str(e)
        return
    w = w.squeeze().reshape(len(mix), -1) if w.dim() > 2 else w
    assert torch.isfinite(w).all() and (w >= 0).all()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(max_size=80))
def test_spkmix_garbage_is_a_clean_error(tmp_path, text):
    path = tmp_path / "spkmix.py"
    path.write_text(f"spk_mix_map = {text}\n", encoding="utf-8")
    try:
        value, _ = load_spk_mix_map(path)
    except (ValueError, SyntaxError):
        return  # cli.main turns both into one line (see test_bad_inputs)
    assert isinstance(value, dict)


# -- audio reading --------------------------------------------------------------------------------
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=2000), st.sampled_from([".wav", ".flac", ".ogg", ".mp3"]))
def test_load_audio_random_bytes_never_crash(tmp_path, blob, suffix):
    path = tmp_path / f"x{suffix}"
    path.write_bytes(blob)
    try:
        wav, sr = load_audio(path)
    except AudioError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e)
        return
    assert wav.ndim == 1 and np.isfinite(wav).all() and sr > 0


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.integers(1, 3000), st.integers(1, 2), st.sampled_from([8000, 22050, 44100, 48000]),
       st.sampled_from(["PCM_16", "PCM_24", "FLOAT"]), st.integers(0, 100))  # fmt: skip
def test_load_audio_reads_what_was_written(tmp_path, n, ch, sr, subtype, cut_pct):
    rng = np.random.default_rng(n)
    data = (0.5 * rng.standard_normal((n, ch))).astype(np.float32).clip(-1, 1)
    path = tmp_path / "a.wav"
    sf.write(path, data, sr, subtype=subtype)
    if cut_pct < 100:  # truncated file: a warning and the part that is there, or an AudioError
        raw = path.read_bytes()
        path.write_bytes(raw[: 44 + (len(raw) - 44) * cut_pct // 100])
    try:
        wav, got_sr = load_audio(path)
    except AudioError as e:
        assert cut_pct < 100 and "\n" not in str(e)
        return
    assert got_sr == sr and wav.ndim == 1 and np.isfinite(wav).all()
    assert len(wav) <= n
    if cut_pct == 100:
        tol = {"PCM_16": 1 / 32767, "PCM_24": 1e-6, "FLOAT": 1e-7}[subtype]
        assert len(wav) == n
        assert np.allclose(wav, data.mean(axis=1), atol=2 * tol)
