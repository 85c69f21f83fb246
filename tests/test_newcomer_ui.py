"""The newcomer's path through the web UI and the HTTP APIs (issue 21), over real HTTP on 127.0.0.1:

- shipped voices (``pretrain/<name>/`` with a ``*.pth`` and ``config.json``) are listed, marked
  shipped, load by name, stay untouched (read-only), and a name never opens a path outside;
- ``/voiceChangeModel`` answers exactly as many samples as it got, at the rate asked (several chunk
  lengths and rates), and 20 consecutive chunks leave no gap;
- errors name the HTTP field (``sSpeakId``, ``spk``, ``options.speaker``), not inference_main.py's
  ``-s``, and a validation error is one line without pydantic's web link;
- ``compress_model.py -hf`` writes into ``compressed/``, and a release in ``logs/44k/`` is no voice;
- the UI in headless Chromium (``webUI.py`` run as a real process): the demo voice is in its list
  marked shipped, the console names ``--share``, transpose 60 is one line, the Tools heading shows
  ``checkpoints/<name>/``, the f0 hint, and one size unit (MiB) in the status and the download box.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.conftest import PYTHON, ROOT, run_script
from tests.http_server import free_port, serve_in_thread
from tests.infer_fixtures import make_workdir, singing
from tests.test_webui_browser import wait_text

SHIPPED = "pretrain/tiny_voice"


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in folder.rglob("*")
        if p.is_file()
    }


def write_shipped_voice(root: Path) -> None:
    """``pretrain/tiny_voice/``: the tiny G_0 compressed with ``-hf`` (the demo voice's layout),
    plus decoys that are not voices: two .pth in one folder, and a .pth symlinked from outside."""
    from compress_model import compress

    d = root / SHIPPED
    d.mkdir(parents=True)
    compress(str(root / "logs/44k/config.json"), str(root / "logs/44k/G_0.pth"), True,
             str(d / "tiny_voice.pth"))  # fmt: skip
    shutil.copyfile(root / "logs/44k/config.json", d / "config.json")
    two = root / "pretrain/two_pths"
    two.mkdir()
    for name in ("a.pth", "b.pth", "config.json"):
        shutil.copyfile(
            d / ("config.json" if name.endswith("json") else "tiny_voice.pth"), two / name
        )
    esc = root / "pretrain/escape"
    esc.mkdir()
    shutil.copyfile(d / "tiny_voice.pth", root.parent / "outside.pth")
    (esc / "model.pth").symlink_to(root.parent / "outside.pth")
    shutil.copyfile(d / "config.json", esc / "config.json")


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from webui.api import create_app
    from webui.service import VoiceService

    base = tmp_path_factory.mktemp("newcomer")
    root = base / "project"
    make_workdir(root)
    write_shipped_voice(root)
    (base / "outside.txt").write_text("must stay")
    service = VoiceService(root, max_seconds=60)
    service.load(root / "logs/44k/G_0.pth", root / "logs/44k/config.json")
    pretrain_before = _snapshot(root / "pretrain")
    with serve_in_thread(create_app(service, max_upload_mb=8)) as url:
        with httpx.Client(base_url=url, timeout=300) as client:
            yield client, root, base
    # shipped voices are read-only: nothing in pretrain/ was written, added or deleted
    assert _snapshot(root / "pretrain") == pretrain_before
    assert (base / "outside.txt").read_text() == "must stay"


def chunk_wav(n: int, sr: int, seed: int = 3) -> bytes:
    """``n`` samples of singing at ``sr`` as a 16-bit wav (what the plug-in sends)."""
    from common.audio import resample

    sig = resample(singing(n / sr + 0.1, seed=seed), 44100, sr)[:n]
    assert len(sig) == n
    buf = io.BytesIO()
    sf.write(buf, sig, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def vst(client, sample: bytes, rate, spk="0"):
    form = {
        "fPitchChange": "0.0",
        "sampleRate": str(rate),
        "sSpeakId": spk,
        "fSafePrefixPadLength": "0.0",
    }
    return client.post(
        "/voiceChangeModel", data=form, files={"sample": ("temp.wav", sample, "audio/wav")}
    )


# -- shipped voices -----------------------------------------------------------------------------
def test_shipped_voice_is_listed_and_loads_by_name(api):
    client, root, _ = api
    listed = {m["name"]: m for m in client.get("/api/v1/models").json()["models"]}
    # logs/44k first, the shipped voice after; the decoys (two .pth, a .pth from outside
    # pretrain/) and pretrain/nsf_hifigan (no .pth) are not voices
    assert list(listed) == ["logs/44k/G_0.pth", SHIPPED], listed
    assert listed[SHIPPED]["shipped"] is True and listed["logs/44k/G_0.pth"]["shipped"] is False
    assert listed[SHIPPED]["config"] == f"{SHIPPED}/config.json"
    r = client.post("/api/v1/load", json={"model": SHIPPED})
    assert r.status_code == 200, r.text
    loaded = r.json()["loaded"]
    assert loaded["model"] == f"{SHIPPED}/tiny_voice.pth" and loaded["speakers"] == {
        "alto": 0,
        "bass": 1,
    }
    r = vst(client, chunk_wav(22050, 44100), 44100)
    assert r.status_code == 200, r.text
    assert sf.info(io.BytesIO(r.content)).frames == 22050
    # the onnx backend would cache an export next to the checkpoint: refused for a shipped voice
    r = client.post("/api/v1/load", json={"model": SHIPPED, "backend": "onnx"})
    assert (
        r.status_code == 400
        and "read-only" in r.json()["error"]
        and "trained/" in r.json()["error"]
    )
    assert client.get("/api/v1/models").json()["loaded"]["model"] == f"{SHIPPED}/tiny_voice.pth"
    r = client.post("/api/v1/load", json={"model": "logs/44k/G_0.pth"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "name",
    ["pretrain/escape", "pretrain/two_pths", "pretrain/nsf_hifigan", "pretrain", "pretrain/",
     f"{SHIPPED}/", f"{SHIPPED}/tiny_voice.pth", f"{SHIPPED}/../../outside.pth", "pretrain/../../outside.txt",
     "pretrain/../logs/44k/G_0.pth", "../pretrain/tiny_voice", "/etc/passwd", str(Path.cwd() / SHIPPED),
     "pretrain/%2e%2e/outside.pth", "pretrain\\..\\..\\outside.pth", "demo_voice", "tiny_voice"],
)  # fmt: skip
def test_a_shipped_voice_name_never_opens_a_path(api, name):
    client, root, _ = api
    before = client.get("/api/v1/models").json()["loaded"]
    r = client.post("/api/v1/load", json={"model": name})
    assert r.status_code == 403 and "no voice called" in r.json()["error"], (name, r.text)
    assert client.get("/api/v1/models").json()["loaded"] == before


def test_the_repository_ships_the_demo_voice():
    """The real pretrain/demo_voice of this repository is discovered as a shipped voice."""
    from webui import paths

    shipped = {e.name: e for e in paths.discover_models(ROOT) if e.shipped}
    assert "pretrain/demo_voice" in shipped, shipped
    assert shipped["pretrain/demo_voice"].config.name == "config.json"


def test_flask_api_without_a_trained_voice_serves_the_shipped_one(tmp_path):
    """A newcomer's first ``python flask_api.py`` (nothing trained, no -m / -c): it serves the
    shipped voice instead of failing on logs/44k/G_37600.pth."""
    root = tmp_path / "project"
    make_workdir(root)
    write_shipped_voice(root)
    (root / "logs/44k/G_0.pth").unlink()
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([PYTHON, str(ROOT / "flask_api.py"), "--port", str(port), "-d", "cpu"], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)  # fmt: skip
    try:
        t0 = time.monotonic()
        while True:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() - t0 < 180, "flask_api.py did not start"
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/models", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        assert r.json()["loaded"]["model"] == f"{SHIPPED}/tiny_voice.pth", r.text
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"serving the shipped voice {SHIPPED}" in out, out


# -- VST: exact length --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "n, sr, daw",
    [(72000, 48000, 48000), (4410, 44100, 44100), (12345, 48000, 48000), (5000, 22050, 22050),
     (30001, 96000, 96000), (1601, 16000, 16000), (48000, 48000, 0), (44100, 44100, 48000),
     (7000, 48000, 44100)],
)  # fmt: skip
def test_vst_answers_exactly_as_many_samples_as_it_got(api, n, sr, daw):
    r = vst(api[0], chunk_wav(n, sr), daw)
    assert r.status_code == 200, r.text
    info = sf.info(io.BytesIO(r.content))
    out_sr = daw or sr  # sampleRate 0: the chunk's own rate
    assert info.samplerate == out_sr and info.subtype == "PCM_16"
    assert info.frames == round(n * out_sr / sr), (n, sr, daw, info.frames)


def test_vst_twenty_consecutive_chunks_leave_no_gap(api):
    """A DAW's stream cut into 20 chunks of uneven lengths: every answer is as long as its chunk
    (the stream keeps its length) and ends in converted audio, not a zero-filled tail."""
    client = api[0]
    sr = 48000
    rng = np.random.default_rng(0)
    lengths = rng.integers(6000, 14000, size=20)
    total_in = total_out = 0
    for i, n in enumerate(lengths):
        r = vst(client, chunk_wav(int(n), sr, seed=i), sr)
        assert r.status_code == 200, r.text
        out, out_sr = sf.read(io.BytesIO(r.content), dtype="int16")
        assert out_sr == sr and len(out) == n, (i, n, len(out))
        assert np.abs(out[-64:]).max() > 0, f"chunk {i} ends in silence"
        total_in += int(n)
        total_out += len(out)
    assert total_out == total_in


# -- messages for HTTP callers ------------------------------------------------------------------
def test_errors_name_the_http_field_not_a_cli_flag(api):
    client = api[0]
    song = chunk_wav(22050, 44100)
    cases = [
        ("sSpeakId", vst(client, song, 44100, spk="7")),
        ("spk", client.post("/wav2wav", data={"spk": "nobody"}, files={"audio": ("a.wav", song)})),
        ("options.speaker", client.post("/api/v1/convert", data={"options": '{"speaker": "nobody"}'},
                                        files={"audio": ("a.wav", song)})),
    ]  # fmt: skip
    for field, r in cases:
        assert r.status_code == 400, (field, r.text)
        err = r.json()["error"]
        assert err.startswith(f"{field}: speaker ") and "alto (0), bass (1)" in err, err
        assert f"as {field})" in err and "-s" not in err.split(), err
    r = client.post(
        "/api/v1/convert", data={"options": '{"trans": 60}'}, files={"audio": ("a.wav", song)}
    )
    assert r.status_code == 400
    assert r.json()["error"] == "options: trans: input should be less than or equal to 48, got 60"


def test_cli_flags_in_messages_become_http_fields():
    """Messages written for inference_main.py (Svc's) reach HTTP callers with the field names."""
    from webui.api import http_message

    said = ("model_0.pt: it cannot convert alone (-od); use -shd with a so-vits model; automatic f0 "
            "prediction (-a) is not in the graph; a speaker mix (-usm) needs ids; give -s alto; -1 dB, x-s")  # fmt: skip
    assert http_message(said) == (
        "model_0.pt: it cannot convert alone (only_diffusion); use shallow_diffusion with a so-vits "
        "model; automatic f0 prediction (options.auto_predict_f0) is not in the graph; a speaker mix "
        "(options.use_spk_mix) needs ids; give options.speaker alto; -1 dB, x-s"
    )


def test_ui_transpose_out_of_range_is_one_line(tmp_path):
    from webui.app import SETTING_NAMES, WebUI
    from webui.service import ConvertOptions

    ui = WebUI(tmp_path, temp_dir=tmp_path / "ui")
    values = dict(ConvertOptions().model_dump(), trans=60)
    wav = tmp_path / "a.wav"
    sf.write(wav, singing(0.5), 44100)
    msg = ui.convert(str(wav), "", *[values[k] for k in SETTING_NAMES])[0]
    assert msg == "Error: trans (-t): input should be less than or equal to 48, got 60", msg


# -- releases are not voices --------------------------------------------------------------------
def test_compress_model_hf_writes_to_compressed_and_releases_are_not_listed(tmp_path):
    from webui import paths

    root = tmp_path / "project"
    make_workdir(root)
    run_script([ROOT / "compress_model.py", "-c", "logs/44k/config.json", "-i", "logs/44k/G_0.pth", "-hf"],
               cwd=root)  # fmt: skip
    assert (root / "compressed/G_0_release_half.pth").is_file()
    assert sorted(p.name for p in (root / "logs/44k").glob("*.pth")) == ["G_0.pth"]
    # a release left in logs/44k by an older version is not a training step: not listed
    shutil.copyfile(
        root / "compressed/G_0_release_half.pth", root / "logs/44k/G_0_release_half.pth"
    )
    assert [e.name for e in paths.discover_models(root)] == ["logs/44k/G_0.pth"]


# -- the UI in a browser ------------------------------------------------------------------------
CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def ui_process(tmp_path_factory):
    """``webUI.py`` run as a user runs it, in a project holding a copy of the real demo voice and
    a tiny training voice; yields ``(url, project, console text so far)``."""
    from tests.infer_fixtures import infer_config, write_random_checkpoint

    root = tmp_path_factory.mktemp("newcomer_ui") / "project"
    (root / "logs/44k").mkdir(parents=True)
    cfg = infer_config()
    (root / "logs/44k/config.json").write_text(json.dumps(cfg))
    write_random_checkpoint(cfg, root / "logs/44k/G_0.pth", seed=0)
    demo = root / "pretrain/demo_voice"
    demo.mkdir(parents=True)
    for name in ("demo_voice.pth", "config.json"):
        shutil.copyfile(ROOT / "pretrain/demo_voice" / name, demo / name)
    sf.write(root / "clip.wav", singing(1.0), 44100)
    port = free_port()
    log = (root.parent / "console.txt").open("w+")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([PYTHON, str(ROOT / "webUI.py"), "--port", str(port), "--max_file_size", "20mb"],
                            cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    try:
        t0 = time.monotonic()
        while "Running on" not in Path(log.name).read_text():
            assert proc.poll() is None, Path(log.name).read_text()
            assert time.monotonic() - t0 < 180, Path(log.name).read_text()
            time.sleep(0.5)
        time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/", root, Path(log.name).read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def page(ui_process):
    assert CHROMIUM.is_file(), "Debian's chromium is missing: run scripts/setup.sh --dev"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-default-apps", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        pg = browser.new_page(viewport={"width": 1280, "height": 1600})
        pg.set_default_timeout(TIMEOUT_MS)
        pg.goto(ui_process[0])
        pg.wait_for_selector("#load_btn")
        yield pg
        browser.close()


def test_browser_newcomer_path(page, ui_process):
    pg = page
    _, root, console = ui_process
    # the console names this script's own flag, not Gradio's launch() argument
    assert "python webUI.py --share" in console and "share=True" not in console, console
    # the demo voice is in the voice list, marked as shipped
    pg.get_by_role("tab", name="Convert").click()
    pg.locator("#local_model input").click()
    options = pg.get_by_role("option").all_inner_texts()
    assert "pretrain/demo_voice (shipped)" in [o.strip() for o in options], options
    pg.get_by_role("option", name="pretrain/demo_voice (shipped)", exact=True).click()
    pg.wait_for_function(
        "() => document.querySelector('#local_model input').value === 'pretrain/demo_voice (shipped)'"
    )
    # the f0 predictor hint: only rmvpe needs a file in pretrain/
    info = pg.locator("#f0p").inner_text()
    assert "rmvpe needs pretrain/rmvpe.pt; fcpe and crepe ship with the install" in info, info
    # transpose 60: one line, no pydantic text or link
    pg.set_input_files("#input_audio input[type=file]", str(root / "clip.wav"))
    pg.wait_for_selector("#input_audio #waveform")
    pg.fill("#trans input", "60")
    pg.click("#convert_btn")
    msg = wait_text(pg, "convert_msg", "Error")
    assert msg == "Error: trans (-t): input should be less than or equal to 48, got 60", msg
    pg.fill("#trans input", "0")
    # Tools: the ONNX heading is whole, and the compressed size reads the same in both places
    pg.get_by_role("tab", name="Tools").click()
    heading = pg.locator("#onnx_heading").inner_text()
    assert "(checkpoints/<name>/, for MoeVoiceStudio)" in heading, heading
    pg.locator("#c_local input").click()
    pg.get_by_role("option", name="logs/44k/G_0.pth", exact=True).click()
    pg.locator("#c_half").get_by_role("checkbox").check()
    pg.click("#compress_btn")
    msg = wait_text(pg, "compress_msg", "compressed/")
    out = root / "compressed/G_0_release_half.pth"
    from webui.tools_tab import size_text

    assert out.is_file() and size_text(out.stat().st_size) in msg, msg
    pg.wait_for_selector("#compress_file .file-size, #compress_file td")
    box = pg.locator("#compress_file").inner_text()
    shown = re.search(r"([\d.]+)\s*(KB|MB)", box)
    assert shown, box
    scale = 2**10 if shown.group(2) == "KB" else 2**20  # Gradio's box counts in 1024s
    assert float(shown.group(1)) == pytest.approx(out.stat().st_size / scale, abs=0.051), (box, msg)
    # nothing was written into the shipped voice's folder
    assert sorted(p.name for p in (root / "pretrain/demo_voice").iterdir()) == [
        "config.json",
        "demo_voice.pth",
    ]
