"""Models that must fit each other, checked before any work (issue 20, item 4).

- a diffusion model and the so-vits model (units width, speech encoder, rate, hop, speaker ids,
  ``-ks``, ``-od``, a speaker mix): ``inference_main.py -shd``, the HTTP API's load,
  ``onnx_export.py --diffusion``;
- a visemes model and the voice model (z width, rate) and a file that is not a visemes
  checkpoint: ``inference_main.py --visemes``;
- an ONNX file and the checkpoint / config it runs with (the weights hash recorded at export),
  a file exported before the hash (loads, with a warning), a damaged ONNX file, and a damaged
  file in the ONNX cache (exported again, with a warning): ``inference_main.py --backend onnx``.

Each mistake ends in one line and exit 1 (2 for a flag), never exit 70; "before any work" is
checked by making the first step of a conversion (reading the input) fail the test.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from common.cli import run_main
from tests.conftest import ROOT, run_script
from tests.diffusion_fixtures import write_diffusion
from tests.infer_fixtures import SPK, infer_config, make_workdir, singing, write_random_checkpoint

ONE_LINE = re.compile(r"^\S[^\n]*: \S[^\n]*$")
G, C = "logs/44k/G_0.pth", "logs/44k/config.json"
BASE = ["-m", G, "-c", C, "-n", "short.wav", "-s", "alto", "-wf", "wav"]
ONNX = "onnx/m_SoVits.onnx"


def _diff(name: str) -> list[str]:
    return ["-shd", "-dm", f"logs/44k/{name}/model_0.pt", "-dc", f"logs/44k/{name}/config.yaml"]


def _edit_yaml(path: Path, fn) -> None:
    cfg = yaml.safe_load(path.read_text())
    fn(cfg)
    path.write_text(yaml.safe_dump(cfg))


def _write_visemes(
    path: Path, z_channels: int, meta_z: int | None = None, voice: Path | None = None
) -> None:
    from motion.channels import NAMES
    from motion.model import VisemesNet

    torch.manual_seed(0)
    model = {"hidden": 16, "n_blocks": 2}
    net = VisemesNet(z_channels, **model)
    meta_z = z_channels if meta_z is None else meta_z
    meta = {"z_channels": meta_z, "model": model, "names": list(NAMES),
            "stats": {"z_silence": [0.0] * meta_z, "baseline": [0.01, 0.5]}}  # fmt: skip
    if voice is not None:  # as motion/trainer.py records it
        from common.fingerprint import checkpoint_sha256

        meta.update(voice_model=str(voice), voice_sha256=checkpoint_sha256(voice))
    torch.save({"model": net.state_dict(), "iteration": 0, "optimizer": None,
                "learning_rate": 0.0, "visemes": meta}, path)  # fmt: skip


def _strip_hash(src: Path, dst: Path) -> None:
    import onnx

    m = onnx.load(str(src))
    keep = [(p.key, p.value) for p in m.metadata_props if p.key != "sovits.checkpoint_sha256"]
    del m.metadata_props[:]
    for k, v in keep:
        e = m.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(m, str(dst))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The tiny inference folder, diffusion models that fit and do not fit it, visemes files, and
    ONNX files: this checkpoint's, another checkpoint's, another config's, a legacy one, damaged."""
    from onnxexport.export import export_synthesizer_file

    root = tmp_path_factory.mktemp("fit")
    make_workdir(root)
    sf.write(root / "raw" / "short.wav", singing(0.6), 44100)
    write_diffusion(root, SPK)  # fits
    write_diffusion(root, SPK, ssl_dim=16, name="diff_wide")
    write_diffusion(root, SPK, name="diff_enc")
    _edit_yaml(
        root / "logs/44k/diff_enc/config.yaml", lambda c: c["data"].update(encoder="vec256l9")
    )
    write_diffusion(root, SPK, name="diff_hop")
    _edit_yaml(root / "logs/44k/diff_hop/config.yaml", lambda c: c["data"].update(block_size=256))
    write_diffusion(root, {"alto": 1, "bass": 0}, name="diff_swapped")
    write_diffusion(root, {**SPK, "tenor": 2}, name="diff_3spk")
    write_diffusion(root, SPK, k_step_max=50, name="diff_shallow")
    # a so-vits model with 3 speakers, for a 2-speaker diffusion model
    cfg3 = infer_config()
    cfg3["spk"] = {**SPK, "tenor": 2}
    cfg3["model"]["n_speakers"] = 3
    bad = root / "bad"
    bad.mkdir()
    (bad / "config3.json").write_text(json.dumps(cfg3))
    write_random_checkpoint(cfg3, bad / "G_3spk.pth")
    write_random_checkpoint(infer_config(), bad / "G_seed1.pth", seed=1)  # same config
    swapped = infer_config()
    swapped["spk"] = {"alto": 1, "bass": 0}
    (bad / "swapped.json").write_text(json.dumps(swapped))
    sr48 = infer_config()
    sr48["data"]["sampling_rate"] = 48000
    (bad / "sr48k.json").write_text(json.dumps(sr48))
    # visemes: fits (inter_channels 16), another width, damaged, not one
    _write_visemes(root / "V_ok.pth", 16)
    _write_visemes(bad / "V_8.pth", 8)
    _write_visemes(bad / "V_damaged.pth", 8, meta_z=16)
    _write_visemes(bad / "V_other_voice.pth", 16, voice=bad / "G_seed1.pth")
    _write_visemes(root / "V_this_voice.pth", 16, voice=root / G)
    # ONNX files
    onnx_dir = root / "onnx"
    onnx_dir.mkdir()
    export_synthesizer_file(root / G, root / C, root / ONNX)
    export_synthesizer_file(bad / "G_seed1.pth", root / C, onnx_dir / "seed1_SoVits.onnx")
    export_synthesizer_file(root / G, bad / "swapped.json", onnx_dir / "swapped_SoVits.onnx")
    _strip_hash(root / ONNX, onnx_dir / "legacy_SoVits.onnx")
    data = (root / ONNX).read_bytes()
    (onnx_dir / "truncated.onnx").write_bytes(data[: len(data) // 2])
    (onnx_dir / "garbage.onnx").write_bytes(b"this is not an onnx file\n" * 200)
    (onnx_dir / "empty.onnx").write_bytes(b"")
    _tiny_onnx(onnx_dir / "add.onnx")
    return root


def _tiny_onnx(path: Path) -> None:
    """A valid ONNX model that is not a synthesizer (y = a + b)."""
    import onnx
    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "add", [a, b], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)]), str(path))


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for p in root.rglob("*"):
        if p.is_file() and not p.name.endswith((".lock", ".log")):
            st = p.stat()
            out[p.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out


def _no_work(monkeypatch) -> None:
    """Reading an input is the first step of a conversion: it must not be reached."""
    import inference.dsp as dsp

    def refuse(*a, **k):
        raise AssertionError("the conversion started before the mistake was found")

    monkeypatch.setattr(dsp, "read_audio", refuse)


def run_inprocess(module: str, args: list, cwd: Path, capfd, monkeypatch) -> tuple[int, str]:
    """``run_main(module.main, args)`` in ``cwd`` as the script's ``__main__`` does; returns
    ``(exit code, stderr)``; warnings reach stderr as in a fresh process."""
    import importlib

    monkeypatch.chdir(cwd)
    main = importlib.import_module(module).main
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    root.addHandler(handler)
    capfd.readouterr()
    try:
        rc = run_main(main, [str(a) for a in args])
    finally:
        root.removeHandler(handler)
    out, err = capfd.readouterr()
    return rc, err


def _last(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


TABLE: list[str] = []


def _record(case: str, where: str, rc: int, line: str) -> None:
    TABLE.append(f"| {case} | {where} | {rc} | `{line.replace('|', '/')}` |")
    table = os.environ.get("BAD_INPUT_TABLE")
    if table:
        with open(table, "a") as f:
            f.write(TABLE[-1] + "\n")


# (kind, extra args, exit code, words in the last line)
INFER_CASES = [
    ("diffusion units width", _diff("diff_wide"), 1, "takes 16-channel units (hubertsoft), the so-vits model 8-channel"),
    ("diffusion speech encoder", _diff("diff_enc"), 1, "trained on 'vec256l9' units, the so-vits model on 'hubertsoft'"),
    ("diffusion hop", _diff("diff_hop"), 1, "hop 256 samples (data.block_size) but the so-vits model's is 512"),
    ("diffusion speaker ids", _diff("diff_swapped"), 1, "speaker 'alto' is id 1 in the diffusion config but 0"),
    ("diffusion -ks above k_step_max", [*_diff("diff_shallow"), "-ks", "100"], 2, "-ks 100: out of range"),
    ("-od with a shallow-only diffusion model", [*_diff("diff_shallow")[1:], "-od"], 1, "trained for shallow diffusion only"),
    ("diffusion speaker mix", [*_diff("diff_3spk"), "-usm"], 1, "a speaker mix (-usm) needs the diffusion model's speakers (3)"),
    ("visemes: not a visemes checkpoint", ["--visemes", G], 1, "not a visemes checkpoint"),
    ("visemes: z width", ["--visemes", "bad/V_8.pth"], 1, "expects z with 8 channels but the voice model"),
    ("visemes: damaged checkpoint", ["--visemes", "bad/V_damaged.pth"], 1, "a damaged visemes checkpoint"),
    ("visemes: another voice model (weights hash)", ["--visemes", "bad/V_other_voice.pth"], 1, "bad/V_other_voice.pth: was trained on the z of"),
    ("visemes: voice model rate", ["--visemes", "V_ok.pth", "-c", "bad/sr48k.json"], 1, "this voice model runs at 48000 Hz"),
    ("onnx: another checkpoint", ["--backend", "onnx", "--onnx_model", "onnx/seed1_SoVits.onnx"], 1, "exported from another checkpoint (G_seed1.pth"),
    ("onnx: another config", ["--backend", "onnx", "--onnx_model", "onnx/swapped_SoVits.onnx"], 1, "exported for the speakers"),
    ("onnx: truncated file", ["--backend", "onnx", "--onnx_model", "onnx/truncated.onnx"], 1, "onnx/truncated.onnx: "),
    ("onnx: garbage file", ["--backend", "onnx", "--onnx_model", "onnx/garbage.onnx"], 1, "onnx/garbage.onnx: "),
    ("onnx: empty file", ["--backend", "onnx", "--onnx_model", "onnx/empty.onnx"], 1, "onnx/empty.onnx: damaged or empty"),
    ("onnx: not a synthesizer", ["--backend", "onnx", "--onnx_model", "onnx/add.onnx"], 1, "not a so-vits-svc 4.x synthesizer"),
    ("onnx: missing file", ["--backend", "onnx", "--onnx_model", "onnx/nope.onnx"], 1, "onnx/nope.onnx: ONNX model not found"),
]  # fmt: skip


@pytest.mark.parametrize("case", INFER_CASES, ids=[c[0] for c in INFER_CASES])
def test_inference_main_refuses_before_any_work(case, work, capfd, monkeypatch):
    kind, extra, want_rc, words = case
    args = list(BASE)
    if "-c" in extra:  # a case's own config replaces the default one
        args[args.index("-c") + 1] = extra[extra.index("-c") + 1]
        extra = [a for i, a in enumerate(extra) if a != "-c" and (i == 0 or extra[i - 1] != "-c")]
    _no_work(monkeypatch)
    before = _snapshot(work)
    rc, err = run_inprocess("inference.cli", [*args, *extra], work, capfd, monkeypatch)
    last = _last(err)
    _record(kind, "inference_main.py", rc, last)
    assert "Traceback" not in err and rc == want_rc, f"rc {rc}\n{err[-3000:]}"
    assert ONE_LINE.match(last) and words in last, err[-3000:]
    assert _snapshot(work) == before, "a refused run changed files"


def test_diffusion_speaker_missing_from_the_diffusion_model(work, capfd, monkeypatch):
    """A 3-speaker so-vits model with a 2-speaker diffusion model: speaker 2 is refused before
    any input is read, speakers 0 and 1 are fine (exercised through Svc.speaker_id)."""
    from inference.infer_tool import Svc

    _no_work(monkeypatch)
    args = ["-m", "bad/G_3spk.pth", "-c", "bad/config3.json", "-n", "short.wav", "-s", "tenor",
            *_diff("diffusion")]  # fmt: skip
    rc, err = run_inprocess("inference.cli", args, work, capfd, monkeypatch)
    _record("diffusion lacks the speaker", "inference_main.py", rc, _last(err))
    assert rc == 1 and "Traceback" not in err, err
    assert "the diffusion model has 2 speakers (ids 0..1); speaker 'tenor' is id 2" in _last(err)
    svc = Svc("bad/G_3spk.pth", "bad/config3.json", "cpu", "", shallow_diffusion=True,
              diffusion_model_path="logs/44k/diffusion/model_0.pt",
              diffusion_config_path="logs/44k/diffusion/config.yaml",
              pretrain_dir="pretrain")  # fmt: skip
    assert svc.speaker_id("bass") == 1 and svc.speaker_id(0) == 0
    with pytest.raises(Exception, match="speaker '2' is id 2"):
        svc.speaker_id("2")


def test_visemes_of_this_voice_model_convert(work, capfd, monkeypatch):
    """A visemes checkpoint recording this voice model's weights passes the check and writes the
    face track beside the audio."""
    track = work / "results" / "short.wav_0key_alto_sovits_pm.blendshapes.npy"
    track.unlink(missing_ok=True)
    rc, err = run_inprocess(
        "inference.cli", [*BASE, "--visemes", "V_this_voice.pth"], work, capfd, monkeypatch
    )
    assert rc == 0, err
    assert np.load(track).shape[1] == 61


def test_fitting_diffusion_still_converts(work, capfd, monkeypatch):
    """The checks pass a diffusion model that fits (-shd, -ks within k_step_max)."""
    out = work / "results" / "short.wav_0key_alto_sovdiff_pm.wav"
    out.unlink(missing_ok=True)
    rc, err = run_inprocess(
        "inference.cli", [*BASE, *_diff("diff_shallow"), "-ks", "50"], work, capfd, monkeypatch
    )
    assert rc == 0, err
    assert out.is_file()


# ---------------------------------------------------------------------------------------------
# ONNX: hash in the metadata, legacy files, the cache
# ---------------------------------------------------------------------------------------------
def test_export_records_the_weights_hash(work, tmp_path):
    """The hash is of the weights (not the file bytes): a copy without enc_q / optimizer state
    (what compress_model.py keeps) has the same hash, another seed another."""
    import onnx

    from common.fingerprint import checkpoint_sha256

    meta = {p.key: p.value for p in onnx.load(str(work / ONNX)).metadata_props}
    assert meta["sovits.checkpoint_sha256"] == checkpoint_sha256(work / G)
    assert meta["sovits.checkpoint"] == "G_0.pth"
    ck = torch.load(work / G, weights_only=True)
    slim = {k: v for k, v in ck["model"].items() if not k.startswith("enc_q.")}
    torch.save({"model": slim, "iteration": 0}, tmp_path / "slim.pth")
    assert checkpoint_sha256(tmp_path / "slim.pth") == checkpoint_sha256(work / G)
    assert checkpoint_sha256(work / "bad" / "G_seed1.pth") != checkpoint_sha256(work / G)


def test_onnx_file_without_hash_loads_with_a_warning(work, capfd, monkeypatch):
    out = work / "results" / "short.wav_0key_alto_sovits_pm.wav"
    out.unlink(missing_ok=True)
    args = [*BASE, "--backend", "onnx", "--onnx_model", "onnx/legacy_SoVits.onnx"]
    rc, err = run_inprocess("inference.cli", args, work, capfd, monkeypatch)
    assert rc == 0, err
    assert "onnx/legacy_SoVits.onnx: no checkpoint hash in the file" in err
    assert "re-export it with onnx_export.py" in err
    assert out.is_file()
    _record("onnx: exported before the hash", "inference_main.py", rc,
            next(ln for ln in err.splitlines() if "no checkpoint hash" in ln))  # fmt: skip


def test_onnx_of_this_checkpoint_loads_silently(work, caplog, monkeypatch):
    from inference.infer_tool import Svc

    monkeypatch.chdir(work)
    with caplog.at_level(logging.WARNING):
        svc = Svc(G, C, "cpu", "", backend="onnx", onnx_model=ONNX)
    assert svc.onnx_synth is not None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


@pytest.mark.parametrize(
    "damage", ["truncated", "empty", pytest.param("garbage", marks=pytest.mark.slow)]
)
def test_damaged_cache_file_is_exported_again(work, tmp_path, damage, caplog):
    """A damaged file in <model folder>/onnx_cache/ (a killed copy, a full disk) is exported
    again with one warning; the fresh file then loads without one."""
    from inference.infer_tool import Svc
    from onnxexport.runtime import cached_export

    good = cached_export(work / G, work / C)  # the name depends on the checkpoint and config bytes
    folder = tmp_path / "m"
    (folder / "onnx_cache").mkdir(parents=True)
    shutil.copy(work / G, folder / "G_0.pth")
    shutil.copy(work / C, folder / "config.json")
    cached = folder / "onnx_cache" / good.name
    data = good.read_bytes()
    cached.write_bytes({"truncated": data[: len(data) // 2], "garbage": os.urandom(4096),
                        "empty": b""}[damage])  # fmt: skip
    svc_args = (folder / "G_0.pth", folder / "config.json", "cpu", "")
    kw = dict(backend="onnx", pretrain_dir=work / "pretrain")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        svc = Svc(*svc_args, **kw)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "the cached ONNX file is damaged; exporting it again" in warnings[0]
    assert "\n" not in warnings[0]
    assert svc.onnx_synth is not None and cached.read_bytes() == data
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        Svc(*svc_args, **kw)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    _record(f"onnx cache: {damage} file", "inference_main.py --backend onnx / web UI load", 0,
            warnings[0])  # fmt: skip


@pytest.mark.slow  # the in-process tests cover the same code
def test_damaged_cache_through_inference_main_subprocess(work, tmp_path):
    """The same through the real script: exit 0, the warning on stderr, the output written."""
    cwd = tmp_path / "w"
    (cwd / "logs" / "44k").mkdir(parents=True)
    for rel in (G, C):
        shutil.copy(work / rel, cwd / rel)
    shutil.copytree(work / "pretrain", cwd / "pretrain")
    (cwd / "raw").mkdir()
    shutil.copy(work / "raw" / "short.wav", cwd / "raw" / "short.wav")
    from onnxexport.runtime import cached_export

    cached = cached_export(cwd / G, cwd / C)  # exported once, then damaged
    cached.write_bytes(cached.read_bytes()[:5000])
    proc = run_script(
        [ROOT / "inference_main.py", *BASE, "--backend", "onnx"], cwd=cwd, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "the cached ONNX file is damaged; exporting it again" in proc.stderr
    assert (cwd / "results" / "short.wav_0key_alto_sovits_pm.wav").is_file()
    assert cached.stat().st_size > 100_000


def test_onnx_mismatch_subprocess(work):
    """A real process: another checkpoint's ONNX file is one line, exit 1, no traceback."""
    proc = run_script([ROOT / "inference_main.py", *BASE, "--backend", "onnx", "--onnx_model",
                       "onnx/seed1_SoVits.onnx"], cwd=work, check=False)  # fmt: skip
    last = _last(proc.stderr)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert ONE_LINE.match(last) and "exported from another checkpoint" in last
    assert "onnx/seed1_SoVits.onnx" in last and G in last and "re-export" in last


@pytest.mark.slow  # the in-process tests cover the same code
def test_garbage_onnx_subprocess(work):
    proc = run_script([ROOT / "inference_main.py", *BASE, "--backend", "onnx", "--onnx_model",
                       "onnx/garbage.onnx"], cwd=work, check=False)  # fmt: skip
    last = _last(proc.stderr)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert ONE_LINE.match(last) and last.startswith("onnx/garbage.onnx: ")


# ---------------------------------------------------------------------------------------------
# onnx_export.py --diffusion beside a so-vits model
# ---------------------------------------------------------------------------------------------
def _export_folder(work: Path, tmp_path: Path, diffusion: str) -> Path:
    ck = tmp_path / "checkpoints" / "m"
    ck.mkdir(parents=True)
    shutil.copy(work / G, ck / "model.pth")
    shutil.copy(work / C, ck / "config.json")
    shutil.copy(work / "logs" / "44k" / diffusion / "model_0.pt", ck / "diffusion.pt")
    shutil.copy(work / "logs" / "44k" / diffusion / "config.yaml", ck / "diffusion.yaml")
    return tmp_path


@pytest.mark.parametrize(
    "diffusion, words",
    [("diff_wide", "takes 16-channel units"), ("diff_enc", "trained on 'vec256l9' units"),
     ("diff_swapped", "speaker 'alto' is id 1")],
)  # fmt: skip
def test_onnx_export_diffusion_must_fit_the_voice(
    work, tmp_path, capfd, monkeypatch, diffusion, words
):
    cwd = _export_folder(work, tmp_path, diffusion)
    rc, err = run_inprocess("onnxexport.cli", ["-n", "m", "--diffusion"], cwd, capfd, monkeypatch)
    last = _last(err)
    _record(f"diffusion vs voice ({diffusion})", "onnx_export.py --diffusion", rc, last)
    assert rc == 1 and "Traceback" not in err, err
    assert (
        ONE_LINE.match(last) and "does not fit checkpoints/m/config.json" in last and words in last
    )
    assert "--diffusion_model/--diffusion_config" in last
    assert not list(cwd.rglob("*.onnx")) and not list(cwd.rglob("*.json"))[1:], "exported anyway"


def test_onnx_export_diffusion_mismatch_subprocess(work, tmp_path):
    cwd = _export_folder(work, tmp_path, "diff_hop")
    proc = run_script([ROOT / "onnx_export.py", "-n", "m", "--diffusion"], cwd=cwd, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "hop 256 samples" in lines[0] and not list(cwd.rglob("*.onnx"))


def test_onnx_export_ends_through_run_main():
    assert "sys.exit(run_main(main))" in (ROOT / "onnx_export.py").read_text()


# ---------------------------------------------------------------------------------------------
# the HTTP API's load (webui/service.py → Svc)
# ---------------------------------------------------------------------------------------------
def test_http_load_refuses_a_diffusion_model_of_another_voice(work, monkeypatch):
    import httpx

    from tests.http_server import serve_in_thread
    from webui.api import create_app
    from webui.service import VoiceService

    listed = work / "logs" / "44k" / "diffusion"
    shutil.copy(work / "logs/44k/diff_wide/model_0.pt", listed / "model_wide.pt")
    shutil.copy(work / "logs/44k/diff_wide/config.yaml", listed / "wide.yaml")
    monkeypatch.chdir(work)  # the diffusion config's vocoder path is relative (as in 4.1)
    service = VoiceService(work, max_seconds=60)
    body = {"model": G, "diffusion_model": "logs/44k/diffusion/model_wide.pt",
            "diffusion_config": "logs/44k/diffusion/wide.yaml", "shallow_diffusion": True}  # fmt: skip
    try:
        with (
            serve_in_thread(create_app(service)) as url,
            httpx.Client(base_url=url, timeout=120) as c,
        ):
            r = c.post("/api/v1/load", json=body)
            _record(
                "diffusion units width",
                "POST /api/v1/load",
                r.status_code,
                r.json().get("error", ""),
            )
            assert r.status_code == 400, r.text
            msg = r.json()["error"]
            assert "\n" not in msg and "takes 16-channel units" in msg and "model_wide.pt" in msg
            fine = {**body, "diffusion_model": "logs/44k/diffusion/model_0.pt",
                    "diffusion_config": "logs/44k/diffusion/config.yaml"}  # fmt: skip
            assert c.post("/api/v1/load", json=fine).status_code == 200
            r = c.post("/api/v1/load", json={"model": G, "backend": "onnx"})
            assert r.status_code == 200, r.text
    finally:
        (listed / "model_wide.pt").unlink()
        (listed / "wide.yaml").unlink()


def test_wav_to_visemes_bad_visemes_file_is_one_line(tmp_path, monkeypatch, capfd):
    """motion/wav_to_visemes.py goes through run_main: a file that is not a visemes checkpoint is
    one line naming it (exit 1), no traceback, nothing written."""
    from motion import wav_to_visemes

    monkeypatch.chdir(tmp_path)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    sf.write(tmp_path / "a.wav", np.zeros(44100, np.float32), 44100)
    capfd.readouterr()
    rc = run_main(wav_to_visemes.main, ["a.wav", "-v", "junk.pth"])
    err = capfd.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "junk.pth" in err[0], err
    assert "Traceback" not in err[0] and "internal error" not in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "junk.pth"]
