"""The servers with bad inputs (issue 20, item 6), over real HTTP on 127.0.0.1: a failed load keeps
the voice, bounded spk_mix / merge rates, a non-ASCII file name end to end, VST ranges, an upload's
length read from its header before decoding, ``--port 99999`` in one line, SIGTERM cleans up."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
import tracemalloc
from urllib.parse import unquote

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.conftest import PYTHON, ROOT, run_script
from tests.http_server import free_port, serve_in_thread
from tests.infer_fixtures import make_workdir, singing

MAX_MB = 2.0
MAX_SECONDS = 60


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from webui.api import create_app
    from webui.service import VoiceService

    root = tmp_path_factory.mktemp("srv") / "project"
    make_workdir(root)
    (root / "logs/44k/broken.pt").write_bytes(b"not a torch file" * 100)  # listed, fails in Svc
    service = VoiceService(root, max_seconds=MAX_SECONDS)
    service.load(root / "logs/44k/G_0.pth", root / "logs/44k/config.json")
    with serve_in_thread(create_app(service, max_upload_mb=MAX_MB)) as url:
        with httpx.Client(base_url=url, timeout=120) as client:
            yield client, root, service


def wav_bytes(seconds: float, sr: int = 44100, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, singing(seconds) if sr == 44100 else np.zeros(int(seconds * sr), np.float32), sr,
             format=fmt)  # fmt: skip
    return buf.getvalue()


def silent_flac(seconds: int, sr: int = 44100) -> bytes:
    """Hours of silence in a few hundred KB (what a header-first check must catch)."""
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", sr, 1, format="FLAC") as f:
        block = np.zeros(sr * 60, np.float32)
        for _ in range(seconds // 60):
            f.write(block)
    return buf.getvalue()


def vst(client, sample: bytes, pitch="0", rate="44100", spk="0"):
    form = {"fPitchChange": pitch, "sampleRate": rate, "sSpeakId": spk}
    return client.post(
        "/voiceChangeModel", data=form, files={"sample": ("c.wav", sample, "audio/wav")}
    )


def convert(client, form: dict, name="a.wav", audio: bytes | None = None):
    return client.post(
        "/api/v1/convert", data=form, files={"audio": (name, audio or wav_bytes(0.5))}
    )


def test_failed_load_keeps_the_loaded_voice(api):
    client, root, service = api
    before = client.get("/api/v1/models").json()["loaded"]
    assert before["model"] == "logs/44k/G_0.pth"
    r = client.post(
        "/api/v1/load", json={"model": "logs/44k/G_0.pth", "cluster": "logs/44k/broken.pt"}
    )
    assert 400 <= r.status_code < 500 and "broken.pt" in r.json()["error"], r.text
    assert client.get("/api/v1/models").json()["loaded"] == before
    assert vst(client, wav_bytes(0.5)).status_code == 200  # still converts with the old voice


def test_failed_ui_load_keeps_the_loaded_voice(api, tmp_path):
    from webui.app import WebUI

    _, root, _ = api
    ui = WebUI(root, temp_dir=tmp_path / "ui")
    ok = ui.load("local", "logs/44k/G_0.pth", None, None, "(none)", None, "cpu", False)
    assert ok[0].startswith("Loaded G_0.pth")
    msg, speakers, mix_box, mix_text = ui.load("local", "logs/44k/G_0.pth", None, None, "logs/44k/broken.pt",
                                               None, "cpu", False)  # fmt: skip
    assert msg.startswith("Error: ") and msg.endswith("(still loaded: G_0.pth)"), msg
    assert ui.service.info is not None and ui.service.svc is not None
    assert speakers == {"__type__": "update"}  # the speaker list is left as it was


@pytest.mark.parametrize(
    "what, mix, says",
    [
        ("json nested 30000 deep", '{"alto": ' + "[" * 30000 + "]" * 30000 + "}", "nested"),
        ("python nested 5000 deep", "spk_mix_map = {0: " + "[" * 5000 + "]" * 5000 + "}", "nested"),
        ("unary minus chain", "spk_mix_map = {0: " + "-" * 50000 + "1}", "spk_mix"),
        ("1+1+1...", "spk_mix_map = {0: 1" + "+1" * 30000 + "}", "spk_mix"),
        ("list inside a segment", json.dumps({"alto": [[[0], 1, 1, 0]], "bass": [[0, 1, 0, 1]]}),
         "four finite numbers"),
        ("segments not a list", json.dumps({"alto": 5, "bass": [[0, 1, 0, 1]]}), "list of at most"),
        ("NaN weight", '{"alto": [[0, 1, NaN, 0]], "bass": [[0, 1, 0, 1]]}', "four finite numbers"),
        ("too long", json.dumps({"alto": [[0, 1, 1, 0]] * 20000}), "characters"),
        ("time 1e10 (a 10 TB arange)", json.dumps({"alto": [[0, 1e10, 1, 1], [1e10, 1, 1, 1]],
                                                    "bass": [[0, 1, 0, 1]]}), "times are fractions"),
        ("weight 1e308 (NaN mix)", json.dumps({"alto": [[0, 1, 1e308, 1e308]], "bass": [[0, 1, 0, 1]]}),
         "weights are 0..1000000"),
    ],
)  # fmt: skip
def test_spk_mix_is_bounded(api, what, mix, says):
    r = convert(api[0], {"options": '{"use_spk_mix": true}', "spk_mix": mix})
    assert r.status_code == 400, (what, r.status_code, r.text[:300])
    assert says in r.json()["error"], r.json()


def test_merge_rates_are_bounded(api, tmp_path):
    from webui.app import WebUI

    _, root, _ = api
    ui = WebUI(root, temp_dir=tmp_path / "ui")
    names = ["logs/44k/G_0.pth", "logs/44k/G_0.pth"]
    for rates, says in (
        ("[" * 30000 + "]" * 30000, "nested too deep"),
        ("[" * 40000 + "]" * 40000, "at most 64000"),
        ('{"logs/44k/G_0.pth": NaN}', "percentage in 0..10000"),
        ('{"logs/44k/G_0.pth": 1e300}', "percentage in 0..10000"),
        ('{"logs/44k/G_0.pth": -5}', "percentage in 0..10000"),
        ('{"logs/44k/G_0.pth": [[[1]]]}', "must be a number"),
        ("[100, 100]", "JSON object"),
    ):
        msg, path, _ = ui.merge(names, None, None, rates, "convex", "m")
        assert msg.startswith("Error: rates: ") and says in msg and path is None, (rates[:40], msg)
    assert not (root / "trained").exists()


def test_non_ascii_upload_name_end_to_end(api):
    client, root, _ = api
    name = "песня 歌 ü.wav"
    r = convert(client, {"options": json.dumps({"wav_format": "wav"})}, name=name)
    assert r.status_code == 200, r.text
    out = unquote(r.headers["x-output-path"])
    assert out == f"results/{name}_0key_alto_sovits_pm.wav"
    assert (root / out).is_file()
    cd = r.headers["content-disposition"]
    assert cd.startswith('attachment; filename="') and "filename*=UTF-8''" in cd
    assert unquote(cd.split("filename*=UTF-8''")[1]) == out.split("/", 1)[1]
    np.testing.assert_array_equal(sf.read(io.BytesIO(r.content))[0], sf.read(root / out)[0])
    r = client.post("/wav2wav", data={"spk": "bass"}, files={"audio": ("曲.wav", wav_bytes(0.5))})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "form, says",
    [
        ({"pitch": "100"}, "fPitchChange: 100 is out of range"),
        ({"pitch": "-1e9"}, "fPitchChange: -1e+09 is out of range"),
        ({"pitch": "nan"}, "fPitchChange: must be finite"),
        ({"rate": "1"}, "sampleRate: 1 is not a sample rate"),
        ({"rate": "1e12"}, "sampleRate: 1000000000000 is not a sample rate"),
        ({"rate": "-44100"}, "sampleRate: -44100 is not a sample rate"),
        ({"spk": "1e400"}, "sSpeakId: must be finite"),
    ],
)
def test_vst_fields_are_range_checked(api, form, says):
    r = vst(api[0], wav_bytes(0.5), **form)
    assert r.status_code == 400 and r.json()["error"].startswith(says), r.text


def test_other_api_mistakes_are_4xx(api):
    """Item 1 sweep: these reached torch and answered 500 (or a numpy message)."""
    client = api[0]
    r = client.post("/api/v1/load", json={"model": "logs/44k/G_0.pth", "device": "cuda:7"})
    assert r.status_code == 400 and r.json()["error"].startswith(
        "device cuda:7: this machine has"
    ), r.text
    assert client.get("/api/v1/models").json()["loaded"]["model"] == "logs/44k/G_0.pth"
    r = convert(client, {"options": json.dumps({"seed": 10**30})})
    assert r.status_code == 400 and r.json()["error"].startswith("options: seed: "), r.text
    r = client.post("/wav2wav", files={"audio": ("a.wav", wav_bytes(0.5, sr=400))})
    assert r.status_code == 400 and "sample rate 400 Hz is not supported" in r.json()["error"], (
        r.text
    )


def test_wav2wav_tran_is_range_checked(api):
    r = api[0].post("/wav2wav", data={"tran": "1000"}, files={"audio": ("a.wav", wav_bytes(0.5))})
    assert r.status_code == 400 and r.json()["error"].startswith("tran: 1000 is out of range"), (
        r.text
    )


def test_long_upload_refused_from_its_header_before_decoding(api):
    """An hour of silent FLAC is ~0.5 MB: refused by the header, never decoded (1 h of float32
    would be 635 MB; the whole request stays under a few MB of Python/numpy allocations)."""
    client = api[0]
    flac = silent_flac(3600)
    assert len(flac) < MAX_MB * 1e6
    tracemalloc.start()
    try:
        r1 = convert(client, {}, name="long.flac", audio=flac)
        r2 = vst(client, flac)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    for r in (r1, r2):
        assert r.status_code == 400, r.text
        assert (
            r.json()["error"]
            == f"upload: input is 3600 s long; the limit is {MAX_SECONDS} s (cut it into parts)"
        )
    assert peak < 40e6, peak
    # a file just inside the limit still converts
    ok = convert(
        client,
        {"options": '{"wav_format": "wav"}'},
        name="ok.flac",
        audio=wav_bytes(1.0, fmt="FLAC"),
    )
    assert ok.status_code == 200, ok.text


def test_ui_file_input_refused_from_its_header(api, tmp_path):
    """The web UI hands the service a file path (gradio keeps the upload as is): same check."""
    from webui.service import ServiceError

    path = tmp_path / "long.flac"
    path.write_bytes(silent_flac(3600))
    tracemalloc.start()
    try:
        with pytest.raises(
            ServiceError, match=r"^long.flac: input is 3600 s long; the limit is 60 s"
        ):
            api[2].read_input(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40e6, peak


@pytest.mark.parametrize(
    "script, args, says",
    [
        ("flask_api.py", ["--port", "99999"], "--port 99999: out of range"),
        ("flask_api_full_song.py", ["--port", "-1"], "--port -1: out of range"),
        ("flask_api.py", ["--max_seconds", "nan"], "--max_seconds nan: out of range"),
        ("flask_api.py", ["--max_upload_mb", "0"], "--max_upload_mb 0.0: out of range"),
        ("webUI.py", ["--port", "99999"], "--port 99999: out of range"),
        ("webUI.py", ["--max_file_size", "lots"], "--max_file_size lots: not a size"),
    ],
)
def test_server_flags_one_line(tmp_path, script, args, says):
    proc = run_script([ROOT / script, *args], cwd=tmp_path, check=False, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [says + proc.stderr.strip().split(says, 1)[1]], (
        proc.stderr
    )
    assert proc.stderr.startswith(says)


def test_webui_removes_its_upload_folder_on_sigterm(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TMPDIR": str(tmp),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    proc = subprocess.Popen([PYTHON, str(ROOT / "webUI.py"), "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        t0 = time.monotonic()
        while True:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() - t0 < 240, "web UI did not start"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        made = list(tmp.glob("sovits-webui-*"))
        assert len(made) == 1 and made[0].is_dir()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert not made[0].exists(), out
