"""onnx_export.py --diffusion: the four graphs of sovits-4.1.md §16.3 (``_encoder``, ``_denoise``,
``_pred``, ``_after``) have 4.1's inputs/outputs (names, order, dtypes, ranks, dynamic axes, opset
16) and pass ``onnx.checker``; each graph computes what the torch module computes; and the graphs
run in MoeVoiceStudio's order (encoder once, then denoise / PLMS / pred per step, then after) by a
consumer that uses only numpy and onnxruntime give the mel of ``Unit2Mel.forward`` with the same
initial noise (PNDM and DDIM). Missing or foreign diffusion files get one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from tests.conftest import ROOT, run_script

MEL = 128
#: tiny sizes: 2 residual blocks of 16 channels, condition of 8
VARIANTS = {"solo": dict(spk={"a": 0}, ssl_dim=768), "trio": dict(spk={"a": 0, "b": 1, "c": 2}, ssl_dim=256)}  # fmt: skip
GRAPHS = ("encoder", "denoise", "pred", "after")


def snr_db(ref: np.ndarray, out: np.ndarray) -> float:
    return float(10 * np.log10((ref**2).sum() / max(((ref - out) ** 2).sum(), 1e-30)))


def _place(root: Path, name: str, spk: dict, ssl_dim: int) -> Path:
    """checkpoints/<name>/diffusion.pt + diffusion.yaml from the 4.1 training layout."""
    from tests.diffusion_fixtures import write_diffusion

    src = write_diffusion(root / f"src_{name}", spk, ssl_dim=ssl_dim)
    folder = root / "checkpoints" / name
    folder.mkdir(parents=True)
    shutil.copy(src / "model_0.pt", folder / "diffusion.pt")
    shutil.copy(src / "config.yaml", folder / "diffusion.yaml")
    return folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``{variant: (folder, Unit2Mel)}``: ``solo`` through the script (no model.pth, so the
    diffusion model alone), ``trio`` through the library function."""
    from diffusion import load_unit2mel
    from onnxexport.export import export_diffusion_model

    root = tmp_path_factory.mktemp("onnx_diff")
    out = {}
    for name, v in VARIANTS.items():
        folder = _place(root, name, **v)
        if name == "solo":
            proc = run_script([ROOT / "onnx_export.py", "-n", name, "--diffusion"], cwd=root)
            assert "diffusion model only" in proc.stdout, proc.stdout
        else:
            export_diffusion_model(name, root / "checkpoints")
        model, _ = load_unit2mel(folder / "diffusion.pt", folder / "diffusion.yaml")
        out[name] = (folder, model)
    return out


def _sessions(folder: Path) -> dict[str, ort.InferenceSession]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return {g: ort.InferenceSession(str(folder / f"{folder.name}_{g}.onnx"), opts,
                                    providers=["CPUExecutionProvider"]) for g in GRAPHS}  # fmt: skip


# ------------------------------------------------------------------------------------------------
# inputs / outputs as §16.3 states them
# ------------------------------------------------------------------------------------------------
DYN = "dyn"


def _expected(n_spk: int, units: int, hidden: int) -> dict:
    """``graph → (inputs [(name, dtype, shape)], output (name, dtype, rank), dynamic axes)``;
    DYN marks a symbolic (dynamic) dimension."""
    f, i64 = "FLOAT", "INT64"
    x = [1, 1, MEL, DYN]
    return {
        "encoder": ([("hubert", f, [1, DYN, units]), ("mel2ph", i64, [1, DYN]),
                     ("f0", f, [1, DYN]), ("volume", f, [1, DYN]), ("spk_mix", f, [DYN, n_spk])],
                    ("mel_pred", f, 3)),
        "denoise": ([("noise", f, x), ("time", i64, [1]), ("condition", f, [1, hidden, DYN])],
                    ("noise_pred", f, 4)),
        "pred": ([("noise", f, x), ("noise_pred", f, x), ("time", i64, [1]),
                  ("time_prev", i64, [1])], ("noise_pred_o", f, 4)),
        "after": ([("x", f, x)], ("mel_out", f, 3)),
    }  # fmt: skip


def _dims(v) -> list:
    return [DYN if d.dim_param else d.dim_value for d in v.type.tensor_type.shape.dim]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_graphs_have_the_reference_io(exported, variant):
    folder, model = exported[variant]
    v = VARIANTS[variant]
    expected = _expected(len(v["spk"]), v["ssl_dim"], model.n_hidden)
    assert sorted(p.name for p in folder.glob("*.onnx")) == sorted(
        f"{variant}_{g}.onnx" for g in GRAPHS
    )
    for graph, (inputs, (out_name, out_dtype, out_rank)) in expected.items():
        m = onnx.load(str(folder / f"{variant}_{graph}.onnx"))
        onnx.checker.check_model(m, full_check=True)
        assert [(o.domain, o.version) for o in m.opset_import] == [("", 16)]
        got = [(i.name, onnx.TensorProto.DataType.Name(i.type.tensor_type.elem_type), _dims(i))
               for i in m.graph.input]  # fmt: skip
        assert got == inputs, graph
        (o,) = m.graph.output
        assert (o.name, onnx.TensorProto.DataType.Name(o.type.tensor_type.elem_type)) == (
            out_name, out_dtype)  # fmt: skip
        assert len(o.type.tensor_type.shape.dim) == out_rank
        ops = {n.op_type for n in m.graph.node}
        assert "ReduceL2" not in ops and not ops & {"RandomNormalLike", "RandomNormal"}
    meta = {
        p.key: p.value for p in onnx.load(str(folder / f"{variant}_encoder.onnx")).metadata_props
    }
    assert meta["sovits.diffusion.mel_bins"] == "128"
    assert meta["sovits.diffusion.k_step_max"] == meta["sovits.diffusion.timesteps"] == "1000"
    assert meta["sovits.diffusion.n_spk"] == str(len(v["spk"]))


# ------------------------------------------------------------------------------------------------
# per-graph parity
# ------------------------------------------------------------------------------------------------
def _conditions(T: int, n_units: int, n_spk: int, seed: int):
    """hubert [1, T_c, C] (float32), mel2ph [1, T] (some 0 = no unit), f0, volume [1, T], and
    spk_mix [T, n_spk] (rows summing to 1)."""
    rng = np.random.default_rng(seed)
    t_c = max(T * 50 // 86, 2)
    hubert = rng.standard_normal((1, t_c, n_units)).astype(np.float32)
    mel2ph = (np.arange(T) * t_c // T + 1).astype(np.int64)[None]
    mel2ph[:, : min(3, T)] = 0  # frames before the first unit take the zero frame
    t = np.arange(T) / 86.13
    f0 = (220 * 2 ** (0.3 * np.sin(2 * np.pi * 5 * t))).astype(np.float32)[None]
    f0[:, T // 3 : T // 3 + 8] = 0
    volume = (rng.random((1, T)) * 0.2).astype(np.float32)
    w = rng.random((T, n_spk)).astype(np.float32) + 0.1
    return hubert, mel2ph, f0, volume, (w / w.sum(1, keepdims=True)).astype(np.float32)


def _torch_condition(model, hubert, mel2ph, f0, volume, mix) -> torch.Tensor:
    """``Unit2Mel.condition`` on frame-rate units (the gather done here, in numpy): [1, T, H]."""
    units = np.concatenate([np.zeros_like(hubert[:, :1]), hubert], axis=1)[:, mel2ph[0]]
    spk = torch.from_numpy(mix) if model.n_spk > 1 else None
    return model.condition(torch.from_numpy(units), torch.from_numpy(f0)[..., None],
                           torch.from_numpy(volume)[..., None], spk)  # fmt: skip


def _report(what: str, ref: np.ndarray, got: np.ndarray, min_snr: float = 60.0) -> None:
    assert got.shape == ref.shape, (what, got.shape, ref.shape)
    diff, snr = float(np.abs(ref - got).max()), snr_db(ref, got)
    print(f"{what}: max|diff| {diff:.2e}, SNR {snr:.1f} dB")
    assert snr >= min_snr, (what, snr)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("T", [37, 200])
def test_each_graph_matches_torch(exported, variant, T):
    from diffusion.samplers import ddim_step

    folder, model = exported[variant]
    sess = _sessions(folder)
    dec = model.decoder
    hubert, mel2ph, f0, volume, mix = _conditions(T, model.unit_embed.in_features, model.n_spk, T)
    if model.n_spk == 1:
        mix = np.ones((T, 1), np.float32)
    with torch.no_grad():
        cond_t = _torch_condition(model, hubert, mel2ph, f0, volume, mix).transpose(1, 2)
    (cond,) = sess["encoder"].run(None, dict(hubert=hubert, mel2ph=mel2ph, f0=f0, volume=volume,
                                             spk_mix=mix))  # fmt: skip
    _report(f"{variant} T={T} _encoder", cond_t.numpy(), cond)

    g = torch.Generator().manual_seed(T)
    x = torch.randn(1, 1, MEL, T, generator=g)
    for step in (999, 500, 3):
        tt = torch.tensor([step])
        with torch.no_grad():
            eps_t = dec.denoise_fn(x, tt, cond_t)
        (eps,) = sess["denoise"].run(None, dict(noise=x.numpy(), time=tt.numpy(), condition=cond))
        _report(f"{variant} T={T} _denoise t={step}", eps_t.numpy(), eps)
        prev = max(step - 100, 0)
        ref = ddim_step(x, eps_t, dec.alphas_cumprod[step], dec.alphas_cumprod[prev])
        (got,) = sess["pred"].run(None, dict(noise=x.numpy(), noise_pred=eps_t.numpy(),
                                             time=tt.numpy(), time_prev=np.array([prev])))  # fmt: skip
        _report(f"{variant} T={T} _pred t={step}->{prev}", ref.numpy(), got)
    (mel,) = sess["after"].run(None, dict(x=x.numpy()))
    _report(f"{variant} T={T} _after", dec.denorm_spec(x.squeeze(1).transpose(1, 2)).numpy(), mel)


# ------------------------------------------------------------------------------------------------
# end to end: the graphs in MoeVoiceStudio's order vs Unit2Mel.forward
# ------------------------------------------------------------------------------------------------
PLMS = {1: (3 / 2, -1 / 2), 2: (23 / 12, -16 / 12, 5 / 12), 3: (55 / 24, -59 / 24, 37 / 24, -9 / 24)}  # fmt: skip


def q_sample_np(mel: np.ndarray, t: int, noise: np.ndarray) -> np.ndarray:
    """The consumer's shallow-diffusion start from a mel ``[1, T, M]`` (4.1's linear schedule,
    ``spec_min`` −12, ``spec_max`` 2): ``√ᾱ_t·norm(mel) + √(1−ᾱ_t)·noise`` as ``[1, 1, M, T]``."""
    ac = np.cumprod(1.0 - np.linspace(1e-4, 0.02, 1000))
    x0 = ((mel - -12.0) / (2.0 - -12.0) * 2 - 1).transpose(0, 2, 1)[:, None].astype(np.float32)
    return (np.float32(np.sqrt(ac[t])) * x0 + np.float32(np.sqrt(1 - ac[t])) * noise).astype(
        np.float32
    )


def consumer(sess: dict, feeds: dict, x: np.ndarray, k_step: int, speedup: int, method: str):
    """A consumer of the four files that uses only numpy and onnxruntime: the condition once,
    then PNDM (PLMS with a Heun-like first step) or DDIM steps over
    ``reversed(range(0, k_step, speedup))`` with ``_denoise`` + ``_pred``, then ``_after``."""
    (cond,) = sess["encoder"].run(None, feeds)

    def denoise(x, t):
        return sess["denoise"].run(None, {"noise": x, "time": np.array([t], np.int64),
                                          "condition": cond})[0]  # fmt: skip

    def pred(x, e, t, tp):
        return sess["pred"].run(None, {"noise": x, "noise_pred": e, "time": np.array([t], np.int64),
                                       "time_prev": np.array([tp], np.int64)})[0]  # fmt: skip

    history: list[np.ndarray] = []
    for t in reversed(range(0, k_step, speedup)):
        tp = max(t - speedup, 0)
        e = denoise(x, t)
        if method == "ddim":
            e_prime = e
        elif not history:
            e_prime = (e + denoise(pred(x, e, t, tp), tp)) / 2
        else:
            c = PLMS[min(len(history), 3)]
            e_prime = c[0] * e + sum(ck * old for ck, old in zip(c[1:], reversed(history)))
        x = pred(x, e_prime.astype(np.float32), t, tp)
        history = (history + [e])[-3:]
    return sess["after"].run(None, {"x": x})[0]


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize(
    "method,speedup,shallow", [("pndm", 100, None), ("ddim", 125, None), ("pndm", 10, 100)]
)
def test_end_to_end_matches_unit2mel(exported, variant, method, speedup, shallow):
    """From noise over all 1000 steps, or shallow diffusion of ``k_step`` = 100 from a mel."""
    folder, model = exported[variant]
    sess = _sessions(folder)
    T, seed = 200, 7
    hubert, mel2ph, f0, volume, mix = _conditions(T, model.unit_embed.in_features, model.n_spk, 3)
    if model.n_spk == 1:
        mix = np.ones((T, 1), np.float32)
    units = np.concatenate([np.zeros_like(hubert[:, :1]), hubert], axis=1)[:, mel2ph[0]]
    gt = None
    if shallow:
        gt = (np.random.default_rng(5).random((1, T, MEL)) * 8 - 9).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(units), torch.from_numpy(f0)[..., None],
                    torch.from_numpy(volume)[..., None],
                    torch.from_numpy(mix) if model.n_spk > 1 else None,
                    gt_spec=None if gt is None else torch.from_numpy(gt), infer_speedup=speedup,
                    method=method, k_step=shallow or 0,
                    generator=torch.Generator().manual_seed(seed)).numpy()  # fmt: skip
    # Unit2Mel.forward's first draw is the initial noise [1, 1, M, T], or the q_sample noise,
    # which 4.1 draws with randn_like on the transposed mel [1, 1, M, T] (strides of [1, T, M]:
    # filled element by element in memory order, other numbers than a contiguous randn)
    g = torch.Generator().manual_seed(seed)
    if shallow:
        view = torch.empty(1, T, MEL).transpose(1, 2)[:, None]
        noise = torch.empty_like(view).normal_(generator=g).numpy()
    else:
        noise = torch.randn(1, 1, MEL, T, generator=g).numpy()
    feeds = dict(hubert=hubert, mel2ph=mel2ph, f0=f0, volume=volume, spk_mix=mix)
    if shallow:
        got = consumer(sess, feeds, q_sample_np(gt, shallow - 1, noise), shallow, speedup, method)
    else:
        got = consumer(sess, feeds, noise, model.decoder.k_step, speedup, method)
    assert got.shape == (1, T, MEL)
    what = f"{variant} {method} speedup {speedup} " + (f"shallow k_step {shallow}" if shallow
                                                        else "from noise")  # fmt: skip
    _report(f"{what}: end-to-end mel", ref, got)
    # without the mel's mean, so that the offset does not flatter the SNR
    _report(f"{what}: end-to-end mel - mean", ref - ref.mean(), got - ref.mean())


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------
def test_missing_or_foreign_diffusion_files_are_one_line(exported, tmp_path):
    from common.errors import UserError
    from onnxexport.export import export_diffusion_model

    solo, _ = exported["solo"]
    ck = tmp_path / "checkpoints"
    (ck / "empty").mkdir(parents=True)
    proc = run_script([ROOT / "onnx_export.py", "-n", "empty", "--diffusion"], cwd=tmp_path,
                      check=False)  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "diffusion.pt: not found" in lines[0] and "logs/44k/diffusion/model_" in lines[0]

    (ck / "noyaml").mkdir()
    shutil.copy(solo / "diffusion.pt", ck / "noyaml" / "diffusion.pt")
    (ck / "json").mkdir()
    shutil.copy(solo / "diffusion.pt", ck / "json" / "diffusion.pt")
    (ck / "json" / "diffusion.yaml").write_text('{"train": {}, "data": {}, "model": {}}')
    (ck / "other").mkdir()  # a checkpoint of another shape (the trio model) with solo's config
    shutil.copy(exported["trio"][0] / "diffusion.pt", ck / "other" / "diffusion.pt")
    shutil.copy(solo / "diffusion.yaml", ck / "other" / "diffusion.yaml")
    (ck / "notorch").mkdir()
    (ck / "notorch" / "diffusion.pt").write_text("not a checkpoint")
    shutil.copy(solo / "diffusion.yaml", ck / "notorch" / "diffusion.yaml")
    cases = {"noyaml": "diffusion.yaml: not found", "json": "diffusion.yaml",
             "other": "does not match", "notorch": "diffusion.pt"}  # fmt: skip
    for name, text in cases.items():
        with pytest.raises(UserError, match=text) as e:
            export_diffusion_model(name, ck)
        assert "\n" not in str(e.value), name
    assert not list(ck.rglob("*.onnx"))
    # with model.pth absent, --cluster / --encoder cannot go with --diffusion alone
    proc = run_script([ROOT / "onnx_export.py", "-n", "noyaml", "--diffusion", "--encoder"],
                      cwd=tmp_path, check=False)  # fmt: skip
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
