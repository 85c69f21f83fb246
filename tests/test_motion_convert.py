"""The face track of a conversion: z as the decoder receives it, laid on the output grid
(slices, padding, crossfades), and ``inference_main.py --visemes`` end to end."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from motion.channels import NAMES
from motion.conversion import ZTrack, convert_with_face
from motion.import_llf import read_llf_csv
from motion.model import VisemesNet
from motion.predict import VisemesPredictor
from tests.conftest import ROOT, run_script
from tests.infer_fixtures import make_workdir


def test_ztrack_geometry_offsets_and_crossfade():
    hop, c = 512, 2
    tr = ZTrack(np.full(c, -1.0, np.float32), hop)
    tr.start(40 * hop)
    local = torch.arange(30, dtype=torch.float32).repeat(1, c, 1)  # z[k, i] = i
    # slice 1: output samples [1000, 1000+9000) from local samples starting at pad 700
    tr.decoder_input(local)
    tr.piece(1000, 700, 9000, 9000, None, 0)
    centres = hop * np.arange(40) + hop / 2
    sel = (centres >= 1000) & (centres < 10000)
    want = (centres[sel] - 1000 + 700 - hop / 2) / hop
    np.testing.assert_allclose(tr.z[0, sel], want, atol=1e-6)
    assert (tr.z[:, ~sel & (centres < 1000)] == -1).all()  # untouched: silence z
    # slice 2 starts at 8000 with a crossfade over [8500, 9500) to a constant z of 100
    tr.decoder_input(torch.full((1, c, 30), 100.0))
    tr.piece(8000, 700, 9000, 9000, 8500, 1000)
    j = int(np.flatnonzero((centres >= 8500) & (centres < 9500))[0])
    w = (centres[j] - 8500) / 999
    prev = (centres[j] - 1000 + 700 - hop / 2) / hop
    assert tr.z[0, j] == pytest.approx(prev * (1 - w) + 100 * w, abs=1e-4)
    assert (tr.z[:, centres >= 9500][:, : int((17000 - 9500) / hop)] == 100).all()


def write_random_visemes(path, z_channels=16):
    torch.manual_seed(0)
    model = {"hidden": 16, "n_blocks": 2}
    net = VisemesNet(z_channels, **model)
    stats = {"z_silence": [0.0] * z_channels, "baseline": [0.01, 0.5]}
    meta = {"z_channels": z_channels, "model": model, "names": list(NAMES), "stats": stats}
    torch.save({"model": net.state_dict(), "iteration": 0, "optimizer": None,
                "learning_rate": 0.0, "visemes": meta}, path)  # fmt: skip


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("face_work")
    make_workdir(root)
    write_random_visemes(root / "V_0.pth")
    return root


def test_decoder_z_reaches_the_track(work, monkeypatch):
    """Output frame j takes the decoder's z at the local position of its centre sample."""
    from inference.infer_tool import Svc

    monkeypatch.chdir(work)
    svc = Svc("logs/44k/G_0.pth", "logs/44k/config.json", "cpu")
    seen, placed = [], []

    class Spy(ZTrack):
        def decoder_input(self, z):
            seen.append(z[0].float().numpy().copy())
            super().decoder_input(z)

        def piece(self, *args):
            placed.append(args)
            super().piece(*args)

    pred = VisemesPredictor("V_0.pth")
    wav, _ = sf.read("raw/song.wav", dtype="float32")
    plain = svc.slice_inference(wav, "alto", 0, -40, 0, False, 0.4)
    spy = Spy(pred.z_silence)
    svc.z_listener = spy
    audio = svc.slice_inference(wav, "alto", 0, -40, 0, False, 0.4)
    svc.z_listener = None
    np.testing.assert_array_equal(audio, plain)  # the listener changes nothing
    assert len(seen) == len(placed) >= 1 and spy.z.shape == (16, len(wav) // 512)
    at, pad_len, piece_len, y_len, blend_at, _ = placed[0]
    assert blend_at is None and seen[0].shape[1] * 512 == y_len + 2 * pad_len
    off = (piece_len - y_len) // 2 if y_len < piece_len else 0
    j = np.arange(len(wav) // 512)
    centre = 512 * j + 256
    inside = (centre >= at) & (centre < at + piece_len)
    local = (centre[inside] - at - off + pad_len - 256) / 512
    want = np.stack([np.interp(local, np.arange(seen[0].shape[1]), ch) for ch in seen[0]])
    np.testing.assert_allclose(spy.z[:, inside], want, atol=1e-6)
    audio2, values = convert_with_face(svc, pred, wav, "alto", 0, -40, 0, False, 0.4)
    np.testing.assert_array_equal(audio2, plain)
    assert values.shape == (len(wav) // 512, 61) and values.dtype == np.float32


@pytest.mark.slow  # subprocess-heavy; the default run keeps the in-process checks
def test_inference_main_visemes_writes_aligned_track(work):
    base = ["-m", "logs/44k/G_0.pth", "-c", "logs/44k/config.json", "-n", "song.wav", "-s", "bass",
            "-cl", "1.5", "-lg", "0.3", "-wf", "wav"]  # fmt: skip
    run_script([ROOT / "inference_main.py", *base], cwd=work)
    out = work / "results" / "song.wav_0key_bass_sovits_pm.wav"
    plain, _ = sf.read(out, dtype="float32")
    proc = run_script([ROOT / "inference_main.py", *base, "--visemes", "V_0.pth"], cwd=work)
    with_face, sr = sf.read(out, dtype="float32")
    np.testing.assert_array_equal(with_face, plain)  # numerically neutral
    npy = work / "results" / "song.wav_0key_bass_sovits_pm.blendshapes.npy"
    track = np.load(npy)
    assert track.dtype == np.float32 and track.shape == (len(plain) // 512, 61)
    assert ((track[:, :52] >= 0) & (track[:, :52] <= 1)).all()
    values, secs, _ = read_llf_csv(npy.with_suffix(".csv"))
    assert len(values) == len(track)
    np.testing.assert_allclose(values, track, atol=1e-6)
    np.testing.assert_allclose(secs, np.arange(len(track)) * 512 / 44100, atol=1e-5)  # FF.fff
    assert "face track" in proc.stderr
    bad = run_script([ROOT / "inference_main.py", *base, "--visemes", "logs/44k/G_0.pth"], cwd=work,
                     check=False)  # fmt: skip
    assert bad.returncode != 0 and "not a visemes checkpoint" in bad.stderr
    assert "Traceback" not in bad.stderr
