"""The realtime f0 continuity (inference/realtime/convert.py: correct_octaves, OctaveState,
SvcConverter.continuity) on the case the quality bench found (issue 22): a note whose first
frames the f0 predictor gives an octave low (fcpe on vocadito_1 at 1.0 s: 75, 75, 70 Hz, then
138-145 Hz). The corrector used to take those frames as its reference and halve the rest of the
note, so the stream sang the whole first note an octave low."""

from __future__ import annotations

import numpy as np
import torch

from inference.realtime import StreamConfig, StreamEngine
from inference.realtime.convert import (
    OCTAVE_MAX_FIXED,
    OCTAVE_STABLE_FRAMES,
    OctaveState,
    SvcConverter,
    correct_octaves,
)

SR, HOP = 44100, 512
ONSET = [75.0, 75.0, 70.0]  # the predictor's first frames of the note (subharmonic)


def note_track(rest: int = 40, note: int = 130) -> np.ndarray:
    """Per-frame f0 (Hz) of the bench case: a rest, the onset frames, then a slowly rising note
    at 138-180 Hz, then a rest. ``[rest + 3 + note + rest]``."""
    body = 138.0 * 2.0 ** (np.linspace(0.0, 0.38, note))
    return np.concatenate([np.zeros(rest), ONSET, body, np.zeros(rest)])


def test_untrusted_onset_is_not_a_reference():
    f0 = note_track()
    out = correct_octaves(f0, f0 > 0, None)
    assert np.array_equal(out, f0)  # nothing halved (the old corrector halved 130 frames)


def test_onset_split_across_calls_with_state():
    f0 = note_track()
    st = OctaveState()
    parts = [correct_octaves(f0[i : i + 22], f0[i : i + 22] > 0, st) for i in range(0, len(f0), 22)]
    assert np.array_equal(np.concatenate(parts), f0)


def test_short_glitch_in_a_stable_note_is_corrected_and_does_not_become_the_reference():
    f0 = np.full(30, 200.0)
    f0[10:13] = 400.0  # a 3-frame octave error inside a held note
    out = correct_octaves(f0, f0 > 0, None)
    assert np.allclose(out, 200.0)
    f0[13:] = 201.0  # the frames after the glitch are taken as predicted
    assert np.allclose(correct_octaves(f0, f0 > 0, None)[13:], 201.0)


def test_a_new_octave_that_holds_becomes_the_reference():
    n = OCTAVE_STABLE_FRAMES + OCTAVE_MAX_FIXED + 20
    f0 = np.full(n, 200.0)
    f0[OCTAVE_STABLE_FRAMES + 2 :] = 400.0  # a leap sung without a glide
    out = correct_octaves(f0, f0 > 0, None)
    first = OCTAVE_STABLE_FRAMES + 2
    assert np.allclose(out[first : first + OCTAVE_MAX_FIXED], 200.0)  # corrected for a while
    assert np.allclose(out[first + OCTAVE_MAX_FIXED :], 400.0)  # then followed


def test_rest_forgets_the_reference_across_gated_blocks():
    conv = SvcConverter.__new__(SvcConverter)
    conv.block_frames = 22
    conv.reset()
    t, first_new = 115, 87
    f1, _ = conv.continuity(np.full(t, 200.0), np.ones(t, bool), 71, first_new)
    assert np.allclose(f1, 200.0) and conv._octave.ref == 200.0
    conv.skip()  # a gated block: 22 unvoiced frames, a rest
    assert conv._octave.ref is None
    f2, _ = conv.continuity(np.full(t, 400.0), np.ones(t, bool), 71, first_new)
    assert np.allclose(f2[first_new:], 400.0)


class TrackSvc:
    """A stand-in Svc for the real SvcConverter: its "f0 predictor" reads the f0 (Hz) off the
    input, which is a per-frame constant ``f0 / 1000`` (0: unvoiced), and ``synthesize`` records
    the f0 it was given (``[1, frames]``) and returns ``f0 / 1000`` per frame."""

    def __init__(self):
        self.target_sample, self.hop_size, self.spk2id = SR, HOP, {"a": 0}
        self.dev, self.cluster_model = torch.device("cpu"), None
        self.synth_f0: list[np.ndarray] = []

    def speaker_id(self, s):
        return 0

    def f0_predictor(self, name):
        return None

    def get_unit_f0(self, wav, tran, cr, speaker, f0_filter, f0_predictor):
        frames = len(wav) // HOP
        f0 = np.round(wav[: frames * HOP].reshape(frames, HOP).mean(1) * 1000.0, 3)
        f0t = torch.from_numpy(f0).float()[None]
        return torch.zeros(1, 4, frames), f0t, (f0t > 0).float()

    def synthesize(self, c, f0, uv, sid, wav, **kw):
        f = f0[0].double().numpy()
        self.synth_f0.append(f)
        return torch.from_numpy(np.repeat(f / 1000.0, HOP)).float()


def test_engine_plays_the_first_note_in_its_octave():
    """The whole engine (ring buffer, gate, SvcConverter, SOLA) on the bench case: every frame
    the synthesizer is given for the note body is within a semitone of the source's f0."""
    track = note_track(rest=60, note=150)
    wav = np.repeat(track / 1000.0, HOP).astype(np.float32)
    svc = TrackSvc()
    engine = StreamEngine(svc, StreamConfig(speaker="a", block_time=0.25))
    b = engine.block_samples
    wav = np.pad(wav, (0, -len(wav) % b))
    for i in range(len(wav) // b):
        engine.process(wav[i * b : (i + 1) * b])
    n, t = b // HOP, engine.window_samples // HOP
    first_new = (engine.window_samples - engine.convert_samples) // HOP
    played = {}  # absolute source frame -> the f0 synthesized for it when it was played
    calls = [i for i, g in enumerate(engine.stats["gated"]) if not g]
    assert len(calls) == len(svc.synth_f0) > 5
    for blk, f in zip(calls, svc.synth_f0):
        start = t - f.shape[0]  # the converter synthesizes the window's frames [start, t)
        for j in range(first_new, first_new + n):
            played[(blk + 1) * n - t + j] = f[j - start]
    body = [k for k in played if k >= 0 and track[k] > 100]
    assert len(body) > 100
    cents = [1200 * np.log2(played[k] / track[k]) for k in body]
    assert max(abs(c) for c in cents) < 100, f"worst {max(cents, key=abs):.0f} cents"
