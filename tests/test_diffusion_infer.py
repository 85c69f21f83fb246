"""Conversion with shallow diffusion (-shd), diffusion only (-od) and their flags (sovits-4.1.md
§15): a 4.1-layout random ``model_0.pt`` loads and runs; every sampler gives the right length;
the same seed gives bit-identical output; speaker mix works; missing files are one clear line."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from tests.conftest import ROOT, run_script
from tests.diffusion_fixtures import write_diffusion
from tests.infer_fixtures import SPK, make_workdir  # noqa: F401

MAIN = ROOT / "inference_main.py"
BASE = ["-m", "logs/44k/G_0.pth", "-c", "logs/44k/config.json"]
DIFF = ["-dm", "logs/44k/diffusion/model_0.pt", "-dc", "logs/44k/diffusion/config.yaml"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("diff_work")
    info = make_workdir(root)
    write_diffusion(root, SPK)
    return root, info


def convert(root, *args, check=True):
    return run_script([MAIN, *BASE, *DIFF, *map(str, args)], cwd=root, check=check)


def _svc(root, monkeypatch, **kw):
    from inference.infer_tool import Svc

    monkeypatch.chdir(root)
    return Svc("logs/44k/G_0.pth", "logs/44k/config.json", "cpu", "",
               diffusion_model_path="logs/44k/diffusion/model_0.pt",
               diffusion_config_path="logs/44k/diffusion/config.yaml", **kw)  # fmt: skip


def test_shallow_diffusion_every_sampler_seed_mix_and_second_encoding(work, monkeypatch):
    root, _ = work
    svc = _svc(root, monkeypatch, shallow_diffusion=True, nsf_hifigan_enhance=True,
               spk_mix_enable=True)  # fmt: skip
    assert svc.enhancer is None  # shallow diffusion switches the enhancer off
    wav = sf.read(root / "raw" / "song.wav", dtype="float32")[0][: int(0.8 * 44100)]
    audio, n, n_frames = svc.infer("bass", 0, wav, k_step=100, seed=3)  # the whole -shd path
    assert n == n_frames * svc.hop_size and abs(n - len(wav)) < svc.hop_size
    assert {"synthesizer", "diffusion", "vocoder"} <= set(svc.timings)
    # the same so-vits output through every sampler (diffusion + vocoder)
    sovits, f0 = svc._last_sovits
    c, _, _ = svc.get_unit_f0(wav, 0, 0, "bass", False, "pm")
    sid = torch.LongTensor([[1]])
    outs = {}
    for method, speedup, k_step in [("dpm-solver++", 10, 100), ("dpm-solver", 10, 100),
                                    ("unipc", 10, 100), ("ddim", 10, 100), ("pndm", 10, 100),
                                    ("dpm-solver++", 1, 10)]:  # fmt: skip
        svc.diffusion_args.infer["method"] = method
        svc.diffusion_args.infer["speedup"] = speedup
        with torch.inference_mode():
            out = svc._diffuse(sovits, f0, c, None, sid, wav, k_step, False, seed=3)
        assert out.shape == (n_frames * svc.hop_size,) and torch.isfinite(out).all(), method
        assert out.abs().max() > 0
        outs[(method, speedup)] = out
    assert torch.equal(outs[("dpm-solver++", 10)], audio)  # same seed: bit-identical
    assert not torch.equal(outs[("ddim", 10)], outs[("pndm", 10)])
    with torch.inference_mode():
        other_seed = svc._diffuse(sovits, f0, c, None, sid, wav, 100, False, seed=4)
        second = svc._diffuse(sovits, f0, c, None, sid, wav, 100, True, seed=3)
    assert not torch.equal(other_seed, outs[("pndm", 10)]) and second.shape == audio.shape
    # dynamic speaker mix through the diffusion model (4.1 crashed here, §18.7)
    from inference.cli import load_spk_mix_map

    mix_map, _ = load_spk_mix_map(root / "spkmix.py")
    out = svc.slice_inference(wav, mix_map, 0, -40, 0, False, 0.4, use_spk_mix=True)
    assert len(out) == len(wav) and np.isfinite(out).all()


@pytest.mark.parametrize("layout", ["shd", "contiguous"])
def test_same_seed_gives_41s_start_noise_and_mel(work, monkeypatch, layout):
    """A 4.1-layout ``model_0.pt``: the start point is 4.1's ``q_sample(x_start)`` with
    ``noise = torch.randn_like(x_start)`` drawn right after seeding, ``x_start`` being the view
    ``norm(mel).transpose(1, 2)[:, None]``, and the mel is the sampler's from it. randn_like
    keeps ``x_start``'s strides and fills a non-contiguous tensor element by element, so the
    numbers depend on the mel's layout: ``shd`` is the -shd path, whose mel is the vocoder's
    transposed ``[B, T, M]`` view (§5.2; ``x_start`` contiguous); ``contiguous`` is a contiguous
    mel as 4.1's training batches give (``x_start`` not contiguous: other numbers than a plain
    ``randn`` of the seed, which the start used before)."""
    import diffusion.gaussian as gaussian
    from diffusion.samplers import sample

    root, _ = work
    svc = _svc(root, monkeypatch, shallow_diffusion=True)
    svc.diffusion_args.infer["method"] = "ddim" if layout == "shd" else "dpm-solver++"
    dec = svc.diffusion_model.decoder
    seen = {}
    real_forward, real_sample = dec.forward, gaussian.sample

    def forward(condition, gt_spec=None, **kw):
        seen.update(condition=condition.clone(), gt_spec=gt_spec, **kw)
        seen["mel"] = real_forward(condition, gt_spec, **kw)
        return seen["mel"]

    def spy(method, eps, x, *args):
        seen["x"] = x.clone()
        return real_sample(method, eps, x, *args)

    monkeypatch.setattr(dec, "forward", forward)
    monkeypatch.setattr(gaussian, "sample", spy)
    if layout == "shd":
        wav = sf.read(root / "raw" / "song.wav", dtype="float32")[0][: int(0.6 * 44100)]
        svc.infer("bass", 0, wav, k_step=100, seed=5)
        assert seen["gt_spec"].transpose(1, 2).is_contiguous()  # the vocoder's view, as in 4.1
    else:
        g = torch.Generator().manual_seed(0)
        units, f0 = torch.randn(1, 30, 8, generator=g), torch.full((1, 30, 1), 220.0)
        mel = torch.rand(1, 30, 128, generator=g) * 10 - 10
        with torch.inference_mode():
            svc.diffusion_model(units, f0, torch.rand(1, 30, 1, generator=g), torch.tensor([[1]]),
                                gt_spec=mel, infer_speedup=10, method="dpm-solver++", k_step=100,
                                generator=torch.Generator().manual_seed(5))  # fmt: skip
    # the reference computation, in 4.1's draw order on the global generator
    k = seen["k_step"]
    assert k == 100 and seen["gt_spec"].shape[-1] == 128
    x_start = dec.norm_spec(seen["gt_spec"]).transpose(1, 2)[:, None, :, :]
    assert x_start.is_contiguous() == (layout == "shd")
    torch.manual_seed(5)
    noise = torch.randn_like(x_start)
    x_ref = (
        dec.sqrt_alphas_cumprod[k - 1] * x_start + dec.sqrt_one_minus_alphas_cumprod[k - 1] * noise
    )
    assert torch.equal(seen["x"], x_ref)
    torch.manual_seed(5)
    assert torch.equal(torch.randn(x_start.shape), noise) == (layout == "shd")
    cond = seen["condition"].transpose(1, 2)
    with torch.inference_mode():
        x = sample(seen["method"], lambda x_t, t: dec.denoise_fn(x_t, t, cond), x_ref,
                   dec.buffers_dict(), k, seen["infer_speedup"])  # fmt: skip
    mel_ref = dec.denorm_spec(x.squeeze(1).transpose(1, 2))
    torch.testing.assert_close(seen["mel"], mel_ref, rtol=0, atol=1e-5)


def test_training_noise_is_drawn_like_41():
    """train_diff: ``t = randint``, then ``noise = randn_like(x_start)`` on the transposed view."""
    from common.hparams import HParams
    from diffusion import build_unit2mel
    from tests.diffusion_fixtures import diffusion_config

    torch.manual_seed(0)
    net = build_unit2mel(HParams(**diffusion_config(SPK)))
    dec = net.decoder
    cond = torch.randn(2, 40, 8)
    mel = torch.rand(2, 40, 128) * 10 - 10
    torch.manual_seed(9)
    loss = dec(cond, gt_spec=mel, infer=False)
    torch.manual_seed(9)
    x_start = dec.norm_spec(mel).transpose(1, 2)[:, None, :, :]
    t = torch.randint(0, dec.k_step, (2,))
    noise = torch.randn_like(x_start)
    x_t = dec.q_sample(x_start, t, noise)
    ref = torch.nn.functional.mse_loss(noise, dec.denoise_fn(x_t, t, cond.transpose(1, 2)))
    assert torch.equal(loss, ref)


def test_only_diffusion_in_process(work, monkeypatch):
    root, _ = work
    from inference.infer_tool import Svc

    monkeypatch.chdir(root)
    svc = Svc("nope.pth", "nope.json", "cpu", "", only_diffusion=True,
              diffusion_model_path="logs/44k/diffusion/model_0.pt",
              diffusion_config_path="logs/44k/diffusion/config.yaml")  # fmt: skip
    assert svc.net_g_ms is None and svc.spk2id == SPK and svc.hop_size == 512
    wav = sf.read(root / "raw" / "song.wav", dtype="float32")[0][: int(0.5 * 44100)]
    svc.diffusion_args.infer["speedup"] = 20
    a1, n, n_frames = svc.infer("alto", 0, wav, k_step=100, seed=1)
    a2, _, _ = svc.infer("alto", 0, wav, k_step=100, seed=1)
    assert n == n_frames * 512 and torch.equal(a1, a2) and a1.abs().max() > 0


def test_only_diffusion_with_a_cluster_model(work, monkeypatch):
    """-od with a k-means file: its width is checked against the diffusion model's units (there is
    no so-vits model to ask; this used to stop with an AttributeError)."""
    root, _ = work
    from inference.infer_tool import Svc

    monkeypatch.chdir(root)
    assert (root / "logs/44k/kmeans_10000.pt").is_file()
    svc = Svc("nope.pth", "nope.json", "cpu", "logs/44k/kmeans_10000.pt", only_diffusion=True,
              diffusion_model_path="logs/44k/diffusion/model_0.pt",
              diffusion_config_path="logs/44k/diffusion/config.yaml")  # fmt: skip
    svc.diffusion_args.infer["speedup"] = 20
    wav = sf.read(root / "raw" / "song.wav", dtype="float32")[0][: int(0.5 * 44100)]
    audio, _, _ = svc.infer("alto", 0, wav, cluster_infer_ratio=0.5, k_step=100, seed=1)
    assert torch.isfinite(audio).all() and audio.abs().max() > 0


def test_k_step_above_max_is_an_error(work, monkeypatch):
    root, _ = work
    from inference.infer_tool import Svc

    write_diffusion(root, SPK, k_step_max=50, name="diff_shallow_only")
    kw = dict(diffusion_model_path="logs/44k/diff_shallow_only/model_0.pt",
              diffusion_config_path="logs/44k/diff_shallow_only/config.yaml")  # fmt: skip
    monkeypatch.chdir(root)
    svc = Svc("logs/44k/G_0.pth", "logs/44k/config.json", "cpu", "", shallow_diffusion=True, **kw)
    wav = sf.read(root / "raw" / "song.wav", dtype="float32")[0][:20000]
    with pytest.raises(ValueError, match="k_step_max 50"):
        svc.infer("alto", 0, wav, k_step=100)
    with pytest.raises(ValueError, match="shallow diffusion only"):
        Svc("x.pth", "x.json", "cpu", "", only_diffusion=True, **kw).infer("alto", 0, wav)


@pytest.mark.slow
def test_cli_shd_same_seed_bit_identical_and_od(work):
    root, info = work
    out = root / "results" / "song_0key_bass_sovdiff_pm.flac"
    convert(root, "-n", "song", "-s", "bass", "-shd", "--seed", "7")
    first = sf.read(out)[0]
    convert(root, "-n", "song", "-s", "bass", "-shd", "--seed", "7")
    assert np.array_equal(first, sf.read(out)[0])  # bit-identical
    assert len(first) == info["inputs"]["song.wav"][0]
    # diffusion only: no so-vits model needed (-m points nowhere)
    proc = run_script([MAIN, "-m", "nope.pth", "-c", "nope.json", *DIFF, "-n", "song", "-s", "alto",
                       "-od"], cwd=root)  # fmt: skip
    od = sf.read(root / "results" / "song_0key_alto_diff_pm.flac")[0]
    assert len(od) == info["inputs"]["song.wav"][0] and np.abs(od).max() > 0, proc.stderr


def test_cli_missing_diffusion_files(work, monkeypatch):
    root, _ = work
    proc = convert(root, "-n", "song", "-s", "alto", "-shd", "-dm", "logs/none.pt", check=False)
    assert proc.returncode == 1 and "logs/none.pt" in proc.stderr and "-dm" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    from diffusion import DiffusionFileError
    from inference.infer_tool import Svc

    monkeypatch.chdir(root)
    with pytest.raises(DiffusionFileError, match="none.yaml.*-dc"):
        Svc("x.pth", "x.json", "cpu", "", only_diffusion=True, diffusion_config_path="none.yaml",
            diffusion_model_path="logs/44k/diffusion/model_0.pt")  # fmt: skip


def test_speaker_mix_condition_is_weighted_embedding():
    from diffusion import Unit2Mel

    torch.manual_seed(0)
    m = Unit2Mel(8, 3, True, 16, 1, 8, 4, 100, 0)
    units, f0, vol = torch.randn(1, 5, 8), torch.full((1, 5, 1), 220.0), torch.rand(1, 5, 1)
    w = torch.rand(5, 3)
    w = w / w.sum(1, keepdim=True)
    mixed = m.condition(units, f0, vol, w)
    per_spk = torch.stack([m.condition(units, f0, vol, torch.tensor([[k]])) for k in range(3)])
    expect = (w.T[:, None, :, None] * per_spk).sum(0)
    assert torch.allclose(mixed, expect, atol=1e-5)
    one_hot = torch.nn.functional.one_hot(torch.full((5,), 2), 3).float()
    assert torch.allclose(m.condition(units, f0, vol, one_hot), per_spk[2], atol=1e-6)


def test_reference_layout_config_roundtrip(work):
    root, _ = work
    cfg = yaml.safe_load((root / "logs/44k/diffusion/config.yaml").read_text())
    ckpt = torch.load(root / "logs/44k/diffusion/model_0.pt", weights_only=True)
    assert set(ckpt) == {"global_step", "model", "optimizer"} and cfg["model"]["n_spk"] == 2
    assert "decoder.betas" in ckpt["model"] and "spk_embed.weight" in ckpt["model"]
