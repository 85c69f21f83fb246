"""The web UI's Realtime tab (:mod:`webui.realtime_tab`).

Its handlers called directly with chunk files (wav chunks with the browser recorder's placeholder
sizes in the header): no voice is one line, a setting changed mid-stream restarts the stream with
the counts kept, Stop flushes (seconds converted == seconds captured), late chunks after Stop are
dropped, the page's acknowledgement trims what is re-sent, a bad setting is one line.

Then in headless Chromium: the fake capture device plays a sung wav into the page's microphone,
the tab converts it with a tiny random-init voice through the streaming engine, and the converted
audio comes back to the page and is queued for playback.

Checked: before a voice is loaded the tab says so in one line; with the voice, the status line
shows the latency and the compute per block while recording; after Stop, the seconds converted
match the seconds captured within one block (the session is flushed), and the page received
exactly what the server sent, with no piece lost. Timing is not asserted (a loaded 2-core
machine may run over budget): only counts.

Needs Debian's ``chromium`` and ``playwright`` (``scripts/setup.sh --dev``); without them it
FAILS, never skips.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.http_server import free_port
from tests.infer_fixtures import infer_config, singing, write_pretrain, write_random_checkpoint
from tests.test_webui_browser import ARTIFACTS, CHROMIUM, wait_text

TIMEOUT_MS = 60_000
CAPTURE_RATE = 48_000
RECORD_SECONDS = 3.0  # how long the test lets the microphone run (wall time, at least)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("webui_rt") / "project"
    (root / "logs" / "44k").mkdir(parents=True)
    cfg = infer_config()
    (root / "logs/44k/config.json").write_text(json.dumps(cfg))
    write_random_checkpoint(cfg, root / "logs/44k/G_0.pth", seed=0)
    write_pretrain(root / "pretrain")
    return root


@pytest.fixture(scope="module")
def capture_wav(tmp_path_factory) -> Path:
    """1.5 s of singing at 48 kHz, 16-bit mono (Chromium loops it as its microphone)."""
    from common.audio import resample

    sig = resample(singing(1.6, seed=4), 44100, CAPTURE_RATE)[: int(1.5 * CAPTURE_RATE)]
    sig = 0.5 * sig / max(float(np.abs(sig).max()), 1e-6)
    path = tmp_path_factory.mktemp("capture") / "sung.wav"
    sf.write(path, sig, CAPTURE_RATE, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def page(project, capture_wav, tmp_path_factory):
    assert CHROMIUM.is_file(), (
        "Debian's chromium is missing: run scripts/setup.sh --dev (apt-get install chromium)"
    )
    from playwright.sync_api import sync_playwright  # missing package → ImportError → failure

    from webui.app import WebUI

    ui = WebUI(project, temp_dir=tmp_path_factory.mktemp("webui_rt_tmp"))
    port = free_port()
    demo = ui.launch("127.0.0.1", port, max_file_size="5mb", block=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM),
                args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                      "--disable-background-networking", "--disable-component-update", "--disable-sync",
                      "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                      f"--use-file-for-fake-audio-capture={capture_wav}",
                      "--autoplay-policy=no-user-gesture-required"],
            )  # fmt: skip
            pg = browser.new_page(viewport={"width": 1280, "height": 1400})
            pg.set_default_timeout(TIMEOUT_MS)
            pg.goto(f"http://127.0.0.1:{port}/")
            pg.wait_for_selector("#load_btn")
            yield pg
            browser.close()
    finally:
        demo.close()
        ui.cleanup()


def chunk_file(path: Path, x: np.ndarray, rate: int, state_size: bool = True) -> str:
    """``x`` as a 16-bit wav chunk; ``state_size=False``: the header's sizes are the browser
    recorder's placeholders (it writes a stream: data size 2^32 - 45, RIFF size 2^32 - 9)."""
    sf.write(path, x, rate, subtype="PCM_16")
    if not state_size:
        raw = bytearray(path.read_bytes())
        at = raw.index(b"data") + 4
        raw[at : at + 4] = (2**32 - 45).to_bytes(4, "little")
        raw[4:8] = (2**32 - 9).to_bytes(4, "little")
        path.write_bytes(bytes(raw))
    return str(path)


def test_read_wav_chunk(tmp_path):
    from webui.realtime_tab import read_wav_chunk

    x = (np.sin(np.arange(4800) / 7) * 0.5).astype(np.float32)
    for stated in (True, False):
        rate, y = read_wav_chunk(chunk_file(tmp_path / f"{stated}.wav", x, 48000, stated))
        assert rate == 48000 and y.dtype == np.float32 and len(y) == len(x)
        np.testing.assert_allclose(y, x, atol=1 / 32768)
    sf.write(tmp_path / "st24.wav", np.stack([x, -x], 1), 44100, subtype="PCM_24")
    rate, y = read_wav_chunk(tmp_path / "st24.wav")  # stereo mixed down (to 0 here)
    assert rate == 44100 and len(y) == len(x) and np.abs(y).max() < 1e-6
    (tmp_path / "no.wav").write_bytes(b"OggS" + b"\0" * 60)
    with pytest.raises(ValueError, match="not a wav"):
        read_wav_chunk(tmp_path / "no.wav")


def test_resend_until_acknowledged_and_bounded():
    """Each update re-sends what the page has not confirmed (Gradio may fire one .change for
    several updates), at most MAX_UNACKED pieces (a page that never confirms)."""
    from webui.realtime_tab import MAX_UNACKED, RealtimeSlot, RealtimeTab

    tab, slot = RealtimeTab(None), RealtimeSlot()
    slot.rate = 48000
    piece = np.full(480, 0.25, np.float32)
    seqs = [[n for n, _ in json.loads(tab._send(slot, [piece], ""))["pieces"]] for _ in range(3)]
    assert seqs == [[0], [0, 1], [0, 1, 2]]
    msg = json.loads(tab._send(slot, [piece], f"{slot.id}:1"))  # the page has 0 and 1
    assert [n for n, _ in msg["pieces"]] == [2, 3] and msg["id"] == slot.id
    msg = json.loads(tab._send(slot, [piece], "another-recording:3"))  # not this recording's ack
    assert [n for n, _ in msg["pieces"]] == [2, 3, 4]
    for _ in range(3 * MAX_UNACKED):
        msg = json.loads(tab._send(slot, [piece], ""))
    assert [n for n, _ in msg["pieces"]] == list(range(5 + 2 * MAX_UNACKED, 5 + 3 * MAX_UNACKED))
    assert slot.converted == (5 + 3 * MAX_UNACKED) * len(piece)
    assert tab._send(slot, [], f"{slot.id}:{slot.seq - 1}") == {"__type__": "update"}  # all had


SETTINGS = [
    "alto",
    0,
    "pm",
    0.25,
    0.05,
    0.5,
    -50,
]  # speaker, transpose, f0, block, xfade, extra, dB


def test_handlers(project, tmp_path):
    import base64

    from webui.app import WebUI
    from webui.realtime_tab import NO_VOICE, RealtimeSlot, RealtimeTab

    ui = WebUI(project, temp_dir=tmp_path / "ui")
    tab, slot = RealtimeTab(ui), RealtimeSlot()
    sig = singing(1.4, seed=6)
    from common.audio import resample

    sig = resample(sig, 44100, CAPTURE_RATE)
    n = CAPTURE_RATE // 10
    chunks = [chunk_file(tmp_path / f"c{i}.wav", sig[i * n : (i + 1) * n], CAPTURE_RATE, i > 0)
              for i in range(12)]  # fmt: skip
    # no voice: one line, nothing counted; Stop then says nothing was recorded
    status, payload = tab.stream(chunks[0], slot, "", *SETTINGS)
    assert status == NO_VOICE and not isinstance(payload, str)
    ui.service.load(project / "logs/44k/G_0.pth", project / "logs/44k/config.json")
    assert tab.start(slot, *SETTINGS).startswith("Recording. latency")  # engine built, warmed up
    got, ack = {}, ""
    for i, c in enumerate(chunks):
        settings = list(SETTINGS)
        if i >= 6:
            settings[1] = 3  # transpose changed while recording: the stream restarts
        status, payload = tab.stream(c, slot, ack, *settings)
        assert "\n" not in status and "captured" in status, status
        if isinstance(payload, str):
            msg = json.loads(payload)
            assert msg["rate"] == CAPTURE_RATE
            got.update({seq: b64 for seq, b64 in msg["pieces"]})
            if i % 2:  # the page acknowledges every other update: those pieces are not re-sent
                ack = f"{msg['id']}:{msg['pieces'][-1][0]}"
            else:
                assert len(msg["pieces"]) >= 1
    assert "latency" in status and "blocks over budget" in status, status
    assert slot.past and slot.engine.config.transpose == 3  # the first engine's blocks were kept
    status, payload = tab.stop(slot, ack)
    assert status.startswith("Stopped."), status
    if isinstance(payload, str):  # the flushed rest, if any, and what the page had not confirmed
        got.update({seq: b64 for seq, b64 in json.loads(payload)["pieces"]})
    assert sorted(got) == list(range(len(got)))  # every piece, in order, none missing
    samples = sum(len(base64.b64decode(b)) // 2 for b in got.values())
    assert seconds(status, "captured") == pytest.approx(12 * n / CAPTURE_RATE, abs=1e-3)
    assert seconds(status, "converted") == pytest.approx(samples / CAPTURE_RATE, abs=1e-3)
    assert seconds(status, "converted") == seconds(status, "captured"), status
    # a chunk sent before Stop that arrives after it is dropped: the recording is closed
    import gradio as gr

    assert tab.stream(chunks[0], slot, ack, *SETTINGS) == (gr.update(), gr.update())
    assert slot.session is None and slot.captured == 0
    # a bad setting is one line (crossfade longer than the block)
    bad = list(SETTINGS)
    bad[4] = 0.3
    status = tab.start(slot, *bad)
    assert status.startswith("Error: ") and "crossfade" in status and "\n" not in status, status
    assert tab.stream(chunks[0], slot, "", *bad)[0] == status
    assert tab.stop(slot, "")[0] == status  # the error stays shown; the slot is freed
    assert slot.session is None


def seconds(status: str, what: str) -> float:
    m = re.search(rf"{what} ([0-9.]+) s", status)
    assert m, status
    return float(m.group(1))


def record(pg, wall_s: float) -> None:
    """Press Record, keep the microphone on for ``wall_s`` s once the server converts its
    chunks, press Stop."""
    pg.locator("#rt_mic").get_by_role("button", name="Record").click()
    wait_text(pg, "rt_status", "blocks over budget")
    time.sleep(wall_s)
    pg.locator("#rt_mic").get_by_role("button", name="Stop").click()


def test_no_voice_loaded_is_one_line(page):
    pg = page
    pg.get_by_role("tab", name="Realtime").click()
    msg = wait_text(pg, "rt_status", "No voice loaded")
    assert "\n" not in msg and "Convert tab" in msg, msg


def test_stream_through_the_loaded_voice(page):
    pg = page
    pg.get_by_role("tab", name="Convert").click()
    pg.click("#load_btn")
    wait_text(pg, "load_msg", "Loaded G_0.pth")
    pg.get_by_role("tab", name="Realtime").click()
    pg.wait_for_function(
        "() => document.querySelector('#rt_speaker input').value === 'alto'"
    )  # the loaded voice's speakers were listed when the tab opened
    record(pg, RECORD_SECONDS)
    status = wait_text(pg, "rt_status", "Stopped.")
    assert "\n" not in status and "latency" in status and "blocks over budget" in status, status
    captured, converted = seconds(status, "captured"), seconds(status, "converted")
    block = float(re.search(r"block ([0-9]+) ms", status).group(1)) / 1000
    assert captured >= 1.0, status  # the fake microphone ran
    assert abs(converted - captured) <= block, status
    # the page got every piece the server sent, the flushed rest included
    played = pg.wait_for_function(
        """(want) => { const t = document.querySelector('#rt_played textarea').value;
                       const m = t.match(/received ([0-9.]+) s/);
                       return m && Math.abs(parseFloat(m[1]) - want) < 0.0015 ? t : false }""",
        arg=converted,
    ).json_value()
    assert "(0 lost)" in played, played
    # and queued it for playback: converted singing, not silence
    assert pg.evaluate("() => window.sovitsRealtime.peak") > 0.01
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "webui_realtime.png"), full_page=True)
