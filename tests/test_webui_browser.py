"""The web UI (webUI.py) driven in headless Chromium: load a tiny voice, convert an uploaded clip
(player length, f0 and spectrogram pictures, the CLI's file name and bytes), a clear message for a
checkpoint that does not fit its config, static merge, dynamic mix timeline, compression.

Needs Debian's ``chromium`` (/usr/bin/chromium) and the ``playwright`` package, both installed by
``scripts/setup.sh --dev``. Without them this test FAILS: it never skips.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from tests.conftest import ROOT, run_script
from tests.http_server import free_port
from tests.infer_fixtures import infer_config, write_pretrain, write_random_checkpoint, write_raw

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("webui") / "project"
    (root / "logs" / "44k").mkdir(parents=True)
    cfg = infer_config()
    (root / "logs/44k/config.json").write_text(json.dumps(cfg))
    write_random_checkpoint(cfg, root / "logs/44k/G_0.pth", seed=0)
    (root / "trained/second").mkdir(parents=True)
    (root / "trained/second/config.json").write_text(json.dumps(cfg))
    write_random_checkpoint(cfg, root / "trained/second/model.pth", seed=1)
    three = infer_config()  # a checkpoint trained with 3 speakers, shipped with a 2-speaker config
    three["spk"] = {"a": 0, "b": 1, "c": 2}
    three["model"]["n_speakers"] = 3
    (root / "trained/mismatch").mkdir(parents=True)
    write_random_checkpoint(three, root / "trained/mismatch/G_9.pth", seed=2)
    (root / "trained/mismatch/config.json").write_text(json.dumps(cfg))
    write_pretrain(root / "pretrain")
    write_raw(root / "raw")
    return root


@pytest.fixture(scope="module")
def ui_url(project, tmp_path_factory):
    from webui.app import WebUI

    ui = WebUI(project, temp_dir=tmp_path_factory.mktemp("webui_tmp"))
    port = free_port()
    demo = ui.launch("127.0.0.1", port, max_file_size="5mb", block=False)
    yield f"http://127.0.0.1:{port}/"
    demo.close()
    ui.cleanup()


@pytest.fixture(scope="module")
def page(ui_url):
    assert CHROMIUM.is_file(), (
        "Debian's chromium is missing: run scripts/setup.sh --dev (apt-get install chromium)"
    )
    from playwright.sync_api import sync_playwright  # missing package → ImportError → failure

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-default-apps", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        pg = browser.new_page(viewport={"width": 1280, "height": 1600})
        pg.set_default_timeout(TIMEOUT_MS)
        pg.goto(ui_url)
        pg.wait_for_selector("#load_btn")
        yield pg
        browser.close()


def wait_text(pg, elem_id: str, contains: str) -> str:
    """Wait until the textbox ``elem_id`` holds text containing ``contains``; returns it."""
    pg.wait_for_function(
        "([id, s]) => { const t = document.querySelector(`#${id} textarea`); return t && t.value.includes(s) }",
        arg=[elem_id, contains],
    )
    return pg.input_value(f"#{elem_id} textarea")


def wait_change(pg, elem_id: str, before: str) -> str:
    pg.wait_for_function(
        "([id, s]) => { const t = document.querySelector(`#${id} textarea`); return t && t.value && t.value !== s }",
        arg=[elem_id, before],
    )
    return pg.input_value(f"#{elem_id} textarea")


def pick(pg, elem_id: str, value: str) -> None:
    box = pg.locator(f"#{elem_id} input")
    box.click()
    pg.get_by_role("option", name=value, exact=True).click()
    pg.wait_for_function(
        "([id, v]) => document.querySelector(`#${id} input`).value === v", arg=[elem_id, value]
    )


NAME = "song.wav_2key_alto_sovits_pm.flac"  # inference_main.py's name for -n song.wav -t 2 -s alto


def convert_in_ui(pg, project) -> Path:
    """Load the default voice, upload raw/song.wav, transpose +2, convert; returns the output."""
    pg.get_by_role("tab", name="Convert").click()
    pg.click("#load_btn")
    assert "2 speaker(s)" in wait_text(pg, "load_msg", "Loaded G_0.pth")
    pg.set_input_files("#input_audio input[type=file]", str(project / "raw/song.wav"))
    pg.wait_for_selector("#input_audio #waveform")
    pg.fill("#trans input", "2")
    pg.click("#convert_btn")
    msg = wait_text(pg, "convert_msg", "results/")
    assert NAME in msg, msg
    return project / "results" / NAME


def test_load_convert_and_plots(page, project):
    pg = page
    out = convert_in_ui(pg, project)
    data, sr = sf.read(out)
    assert sr == 44100 and len(data) == 4 * 44100  # song.wav is 4.0 s
    # the player holds that audio: fetch what its download link serves and decode it in the browser
    href = pg.get_attribute("#output_audio a[download]", "href")
    assert href.endswith(NAME)
    seconds = pg.evaluate(
        """async (url) => { const buf = await (await fetch(url)).arrayBuffer();
             const ctx = new OfflineAudioContext(1, 1, 44100);
             return (await ctx.decodeAudioData(buf)).duration }""",
        href,
    )
    assert seconds == pytest.approx(4.0, abs=0.01)
    # the player shows the duration once it has loaded the file's metadata (it read "0:00" once
    # when asked at once): wait for it, then check it
    pg.wait_for_function(
        """() => { const d = document.querySelector('#output_audio #duration');
                   return d && d.innerText.trim() !== '0:00' }""",
        timeout=15000,
    )
    assert pg.inner_text("#output_audio #duration") == "0:04"
    # both pictures rendered (decoded images with a real size)
    for plot in ("#f0_plot img", "#spec_plot img"):
        pg.wait_for_function(
            f"() => {{ const i = document.querySelector('{plot}'); return i && i.naturalWidth > 300 }}"
        )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "webui_convert.png"), full_page=True)


@pytest.mark.slow
def test_ui_output_equals_cli_output(page, project):
    """The CLI on the same input with the same settings (and thread count) writes the same bytes."""
    import torch

    out = project / "results" / NAME
    if not out.is_file():
        out = convert_in_ui(page, project)
    cli_dir = project.parent / "cli"
    (cli_dir / "raw").mkdir(parents=True)
    shutil.copyfile(project / "raw/song.wav", cli_dir / "raw/song.wav")
    shutil.copytree(project / "logs", cli_dir / "logs")
    shutil.copytree(project / "pretrain", cli_dir / "pretrain")
    run_script([ROOT / "inference_main.py", "-m", "logs/44k/G_0.pth", "-c", "logs/44k/config.json", "-n", "song.wav",
                "-t", "2", "-s", "alto"], cwd=cli_dir, env={"OMP_NUM_THREADS": str(torch.get_num_threads())})  # fmt: skip
    assert (cli_dir / "results" / NAME).read_bytes() == out.read_bytes()


def test_checkpoint_that_does_not_fit_its_config(page):
    pg = page
    pick(pg, "local_model", "trained/mismatch")
    pg.click("#load_btn")
    msg = wait_text(pg, "load_msg", "Error")
    assert "does not fit" in msg and "emb_g.weight" in msg and "number of speakers" in msg, msg
    pick(pg, "local_model", "logs/44k/G_0.pth")


def test_dynamic_mix_timeline(page, project):
    pg = page
    pg.get_by_role("tab", name="Convert").click()
    pg.click("#load_btn")
    wait_text(pg, "load_msg", "Loaded G_0.pth")
    pg.get_by_role("tab", name="Voice mix").click()
    pg.click("#mix_check_btn")  # the template for the loaded voice was filled in on load
    assert wait_text(pg, "mix_msg", "OK") == "Timeline OK."
    pg.wait_for_function(
        "() => { const i = document.querySelector('#mix_plot img'); return i && i.naturalWidth > 300 }"
    )


def test_static_merge(page, project):
    pg = page
    pg.get_by_role("tab", name="Voice mix").click()
    group = pg.locator("#merge_names")
    group.get_by_label("logs/44k/G_0.pth").check()
    group.get_by_label("trained/second").check()
    pg.wait_for_function(
        "() => document.querySelector('#merge_rates textarea').value.includes('trained/second')"
    )
    pg.fill("#merge_rates textarea", json.dumps({"logs/44k/G_0.pth": 100, "trained/second": 50}))
    pg.fill("#merge_name textarea", "duet")
    pg.click("#merge_btn")
    msg = wait_text(pg, "merge_msg", "trained/duet")
    assert "Merged 2 checkpoints" in msg, msg
    import torch

    from common.checkpoint import safe_load

    merged = safe_load(project / "trained/duet/duet.pth")["model"]
    a = safe_load(project / "logs/44k/G_0.pth")["model"]
    b = safe_load(project / "trained/second/model.pth")["model"]
    w = torch.softmax(torch.tensor([1.0, 0.5]), 0)  # convex mode: softmax(rates / 100)
    key = "emb_g.weight"
    torch.testing.assert_close(merged[key], w[0] * a[key] + w[1] * b[key])
    assert (project / "trained/duet/config.json").is_file()
    # the merged voice is listed for loading right away
    pg.get_by_role("tab", name="Convert").click()
    pick(pg, "local_model", "trained/duet")


def test_compress(page, project):
    pg = page
    pg.get_by_role("tab", name="Tools").click()
    pg.locator("#c_half").get_by_role("checkbox").check()
    pg.click("#compress_btn")
    msg = wait_text(pg, "compress_msg", "compressed/")
    out = project / "compressed" / "G_0_release_half.pth"
    assert out.name in msg and out.is_file(), msg
    import torch

    from common.checkpoint import safe_load

    ckpt = safe_load(out)
    assert not any("enc_q" in k for k in ckpt["model"]) and ckpt["iteration"] == 0
    assert all(v.dtype == torch.float16 for v in ckpt["model"].values() if v.is_floating_point())
    assert not list(project.glob("*.pth"))  # nothing in the project root (4.1 wrote there)


def test_text_input_through_espeak_only_when_installed(page, project):
    """The Text tab is shown only with a local espeak-ng; with it, text is spoken and converted."""
    from webui import tts

    pg = page
    pg.get_by_role("tab", name="Convert").click()
    tab = pg.get_by_role("tab", name="Text (espeak-ng)")
    if not tts.available():
        assert tab.count() == 0 or not tab.is_visible()
        return
    pg.click("#load_btn")
    wait_text(pg, "load_msg", "Loaded G_0.pth")
    tab.click()
    pg.fill("#trans input", "0")
    pg.fill("#tts_text textarea", "La la la, singing a short test line.")
    before = pg.input_value("#convert_msg textarea")
    pg.click("#tts_btn")
    msg = wait_change(pg, "convert_msg", before)
    assert "results/tts.wav_0key_alto_sovits_pm.flac" in msg, msg
    assert (project / "results/tts.wav_0key_alto_sovits_pm.flac").is_file()


def test_ui_serves_no_file_outside_its_folders(ui_url, project):
    import httpx

    for target in ("/etc/passwd", str(project / "logs/44k/config.json"), str(project / "logs/44k/G_0.pth"),
                   "../../../etc/passwd", str(ROOT / "README.md")):  # fmt: skip
        r = httpx.get(f"{ui_url}gradio_api/file={target}", timeout=30)
        assert r.status_code in (403, 404), (target, r.status_code)


def test_ui_upload_size_limit(ui_url):
    import httpx

    r = httpx.post(
        f"{ui_url}gradio_api/upload", files={"files": ("big.wav", b"\0" * 6_000_000)}, timeout=60
    )
    assert r.status_code == 413 and "maximum" in r.text, (r.status_code, r.text[:200])


def test_onnx_export_button(page, project):
    """Tools → Export ONNX: the loaded voice lands in checkpoints/<name>/ and onnx_export.py writes
    <name>_SoVits.onnx (a graph ONNX Runtime opens) and the MoeVoiceStudio checkpoints/<name>.json."""
    pg = page
    pg.get_by_role("tab", name="Convert").click()
    assert (
        pg.locator("#diffusion_row").is_visible() and pg.locator("#shallow_diffusion").is_visible()
    )
    pick(pg, "local_model", "logs/44k/G_0.pth")
    pg.click("#load_btn")
    wait_text(pg, "load_msg", "Loaded G_0.pth")
    pg.get_by_role("tab", name="Tools").click()
    pg.fill("#onnx_name textarea", "tiny")
    pg.click("#onnx_btn")
    msg = wait_change(pg, "onnx_msg", "")
    out = project / "checkpoints/tiny/tiny_SoVits.onnx"
    assert msg.startswith("Exported checkpoints/tiny/tiny_SoVits.onnx"), msg
    assert (project / "checkpoints/tiny/model.pth").read_bytes() == (
        project / "logs/44k/G_0.pth"
    ).read_bytes()
    assert (project / "checkpoints/tiny.json").is_file()
    import onnxruntime as ort

    names = [
        i.name
        for i in ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).get_inputs()
    ]
    assert names[:2] == ["c", "f0"], names
