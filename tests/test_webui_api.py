"""The HTTP APIs over real HTTP on 127.0.0.1 (webui/api.py): the VST plug-in's request, a full
song, the JSON API, bad uploads, path traversal in every string field, concurrent requests."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.diffusion_fixtures import write_diffusion
from tests.http_server import serve_in_thread
from tests.infer_fixtures import SPK, make_workdir, singing

MAX_MB = 2.0


def _snapshot(root: Path) -> dict[str, float]:
    return {
        p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from webui.api import create_app
    from webui.service import VoiceService

    base = tmp_path_factory.mktemp("api")
    root = base / "project"
    make_workdir(root)
    write_diffusion(root, SPK)  # logs/44k/diffusion/{model_0.pt, config.yaml}, random init
    (base / "outside.txt").write_text("must stay")
    service = VoiceService(root, max_seconds=60)
    service.load(root / "logs/44k/G_0.pth", root / "logs/44k/config.json")
    before = {**_snapshot(base)}
    with serve_in_thread(create_app(service, max_upload_mb=MAX_MB)) as url:
        with httpx.Client(base_url=url, timeout=120) as client:
            yield client, root, base, before
    after = _snapshot(base)
    changed = [k for k in after if after[k] != before.get(k)] + [
        k for k in before if k not in after
    ]
    outside = [k for k in changed if not k.startswith("project/results/")]
    assert not outside, f"written outside results/: {outside}"


def wav_bytes(
    seconds: float, sr: int = 44100, fmt: str = "WAV", subtype: str | None = None
) -> bytes:
    from common.audio import resample

    buf = io.BytesIO()
    sf.write(buf, resample(singing(seconds), 44100, sr), sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def read(resp) -> tuple[np.ndarray, int]:
    data, sr = sf.read(io.BytesIO(resp.content))
    return data, sr


def post_upload(client, path: str, form: dict):
    return client.post(path, data=form, files={"audio": ("a.wav", wav_bytes(0.5))})


def vst_post(client, sample: bytes, pitch="0.0", rate="48000", spk="0", filename="temp.wav"):
    # the plug-in's multipart form: the chunk as "sample" plus string fields
    form = {
        "fPitchChange": pitch,
        "sampleRate": rate,
        "sSpeakId": spk,
        "fSafePrefixPadLength": "0.0",
    }
    return client.post(
        "/voiceChangeModel", data=form, files={"sample": (filename, sample, "audio/wav")}
    )


def test_vst_request_as_the_plugin_sends_it(api):
    client = api[0]
    r = vst_post(
        client, wav_bytes(1.0, 48000, subtype="PCM_16"), pitch="2.0", rate="48000.0", spk="1"
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    info = sf.info(io.BytesIO(r.content))
    assert info.samplerate == 48000 and info.subtype == "PCM_16" and info.channels == 1
    assert abs(info.frames - 48000) <= 48000 * 512 / 44100 + 2
    # sampleRate 0 (not sent by the plug-in, 4.1 crashed) answers at the model's rate
    r = vst_post(client, wav_bytes(0.5, 44100), rate="0")
    assert r.status_code == 200 and sf.info(io.BytesIO(r.content)).samplerate == 44100


def test_full_song_upload(api):
    client = api[0]
    song = wav_bytes(3.0) + b""
    r = client.post("/wav2wav", data={"tran": "3", "spk": "alto", "wav_format": "flac"},
                    files={"audio": ("song.wav", song, "audio/wav")})  # fmt: skip
    assert r.status_code == 200, r.text
    data, sr = read(r)
    assert sr == 44100 and len(data) == 3 * 44100 and np.isfinite(data).all()
    assert 'filename="temp.flac"' in r.headers["content-disposition"]
    # a server path, as 4.1's client sent it, is refused with a message
    r = client.post("/wav2wav", data={"audio_path": "raw/song.wav"})
    assert r.status_code == 400 and "upload" in r.json()["error"]


def test_json_api_lists_loads_and_converts(api):
    client, root, *_ = api
    models = client.get("/api/v1/models").json()
    assert [m["name"] for m in models["models"]] == ["logs/44k/G_0.pth"]
    assert "logs/44k/kmeans_10000.pt" in models["models"][0]["cluster_files"]
    assert client.get("/api/v1/speakers").json() == {"speakers": {"alto": 0, "bass": 1}}
    defaults = client.get("/api/v1/options").json()["defaults"]
    assert defaults["loudness_envelope_adjustment"] == 1 and defaults["wav_format"] == "flac"
    assert "/api/v1/convert" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200
    r = client.post(
        "/api/v1/load", json={"model": "logs/44k/G_0.pth", "cluster": "logs/44k/kmeans_10000.pt"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["loaded"]["cluster"] == "logs/44k/kmeans_10000.pt"
    opts = {"speaker": "bass", "trans": -2, "cluster_infer_ratio": 0.5, "wav_format": "wav", "clip": 1.0,
            "linear_gradient": 0.2}  # fmt: skip
    r = client.post("/api/v1/convert", data={"options": json.dumps(opts)},
                    files={"audio": ("take 1.wav", wav_bytes(2.0), "audio/wav")})  # fmt: skip
    assert r.status_code == 200, r.text
    name = "take 1.wav_-2key_bass_0.5_sovits_pm.wav"
    assert r.headers["x-output-path"] == f"results/{name}"
    saved, sr = sf.read(root / "results" / name)
    assert len(saved) == 2 * 44100
    np.testing.assert_array_equal(saved, read(r)[0])
    # dynamic mix timeline
    mix = {"alto": [[0, 1, 1, 0]], "bass": [[0, 1, 0, 1]]}
    r = client.post("/api/v1/convert", data={"options": json.dumps({"use_spk_mix": True}), "spk_mix": json.dumps(mix)},
                    files={"audio": ("m.wav", wav_bytes(1.0), "audio/wav")})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.headers["x-output-path"] == "results/m.wav_0key_spk_mix_sovits_pm.flac"


@pytest.mark.parametrize(
    "what, post, status, words",
    [
        ("empty", lambda c: vst_post(c, b""), 400, "empty"),
        (
            "not audio",
            lambda c: vst_post(c, b"this is not a wav file" * 50),
            400,
            "not a readable audio",
        ),
        ("huge", lambda c: vst_post(c, b"\0" * int(MAX_MB * 1e6 + 1000)), 413, "too large"),
        ("wrong speaker id", lambda c: vst_post(c, wav_bytes(0.5), spk="7"), 400, "speaker"),
        (
            "garbage number",
            lambda c: vst_post(c, wav_bytes(0.5), pitch="high"),
            400,
            "fPitchChange",
        ),
        (
            "wrong speaker name",
            lambda c: post_upload(c, "/wav2wav", {"spk": "nobody"}),
            400,
            "nobody",
        ),
        (
            "bad option",
            lambda c: post_upload(c, "/api/v1/convert", {"options": '{"trans": "up"}'}),
            400,
            "trans",
        ),
        (
            "unknown option",
            lambda c: post_upload(c, "/api/v1/convert", {"options": '{"tempo": 2}'}),
            400,
            "tempo",
        ),
        ("no file", lambda c: c.post("/wav2wav", data={"spk": "0"}), 400, "audio"),
    ],
)
def test_bad_uploads_get_4xx_with_a_message(api, what, post, status, words):
    r = post(api[0])
    assert r.status_code == status, (what, r.status_code, r.text)
    assert words.lower() in r.json()["error"].lower(), r.json()


TRAVERSAL = [
    "../../outside.txt",
    "/etc/passwd",
    "..\\..\\outside.txt",
    "results/../../outside.txt",
    "%2e%2e/x",
]


@pytest.mark.parametrize("evil", TRAVERSAL)
def test_path_traversal_in_every_string_field(api, evil):
    client, root, base, _ = api
    song = wav_bytes(0.5)
    # VST fields
    for field in ("fPitchChange", "sampleRate", "sSpeakId"):
        form = {"fPitchChange": "0", "sampleRate": "44100", "sSpeakId": "0", field: evil}
        r = client.post("/voiceChangeModel", data=form, files={"sample": ("a.wav", song)})
        assert r.status_code == 400, (field, r.text)
    r = vst_post(client, song, filename=evil)  # the upload's file name is never used as a path
    assert r.status_code == 200
    # full song fields
    for field in ("spk", "wav_format", "tran"):
        r = client.post("/wav2wav", data={field: evil}, files={"audio": ("a.wav", song)})
        assert r.status_code == 400, (field, r.text)
    r = client.post("/wav2wav", data={"audio_path": evil})
    assert r.status_code == 400
    # JSON API: load by listed name only
    for body in ({"model": evil}, {"model": "logs/44k/G_0.pth", "cluster": evil}):
        r = client.post("/api/v1/load", json=body)
        assert r.status_code == 403 and "error" in r.json(), r.text
    for key in ("speaker", "f0_predictor", "wav_format"):
        r = client.post(
            "/api/v1/convert",
            data={"options": json.dumps({key: evil})},
            files={"audio": ("a.wav", song)},
        )
        assert r.status_code == 400, (key, r.text)
    r = client.post("/api/v1/convert", data={"spk_mix": evil, "options": '{"use_spk_mix": true}'},
                    files={"audio": ("a.wav", song)})  # fmt: skip
    assert r.status_code == 400
    r = client.post("/api/v1/convert", files={"audio": (evil, song)})
    assert r.status_code == 200, r.text
    out = root / r.headers["x-output-path"]
    assert out.is_file() and out.parent == root / "results"
    assert (base / "outside.txt").read_text() == "must stay"


def test_ten_concurrent_requests_all_answered(api):
    client = api[0]
    chunk, song = wav_bytes(0.5, 48000), wav_bytes(1.0)

    def one(i):
        if i % 2:
            r = vst_post(client, chunk, spk=str(i % 2))
        else:
            r = client.post(
                "/wav2wav",
                data={"spk": "bass", "tran": str(i)},
                files={"audio": (f"s{i}.wav", song)},
            )
        return r.status_code, len(r.content)

    with ThreadPoolExecutor(10) as ex:
        results = list(ex.map(one, range(10)))
    assert all(code == 200 and size > 1000 for code, size in results), results


def test_shallow_diffusion_and_only_diffusion_through_the_json_api(api, monkeypatch):
    """-shd / -od with -ks / -se through the JSON API: the CLI's file name, the input's length."""
    client, root, *_ = api
    monkeypatch.chdir(root)  # the diffusion config's vocoder.ckpt is relative, as webUI.py runs it
    models = client.get("/api/v1/models").json()
    assert models["diffusion_models"] == ["logs/44k/diffusion/model_0.pt"]
    assert models["diffusion_configs"] == ["logs/44k/diffusion/config.yaml"]
    voice = {"model": "logs/44k/G_0.pth", "diffusion_model": "logs/44k/diffusion/model_0.pt",
             "diffusion_config": "logs/44k/diffusion/config.yaml"}  # fmt: skip
    r = client.post("/api/v1/load", json={**voice, "model": "logs/44k/G_0.pth", "shallow_diffusion": True,
                                          "diffusion_config": ""})  # fmt: skip
    assert r.status_code == 400 and "diffusion config" in r.json()["error"], r.text
    r = client.post(
        "/api/v1/load",
        json={**voice, "diffusion_model": "../../outside.txt", "shallow_diffusion": True},
    )
    assert r.status_code == 403, r.text
    song = wav_bytes(1.0)
    plain = client.post("/api/v1/convert", files={"audio": ("d.wav", song)})
    assert plain.status_code == 200, plain.text
    r = client.post("/api/v1/load", json={**voice, "shallow_diffusion": True})
    assert r.status_code == 200, r.text
    loaded = r.json()["loaded"]
    assert (
        loaded["shallow_diffusion"] and loaded["diffusion_model"] == "logs/44k/diffusion/model_0.pt"
    )
    opts = {"speaker": "bass", "k_step": 40, "second_encoding": True}
    r = client.post(
        "/api/v1/convert", data={"options": json.dumps(opts)}, files={"audio": ("d.wav", song)}
    )
    assert r.status_code == 200, r.text
    name = "d.wav_0key_bass_sovdiff_pm.flac"  # inference_main.py -n d.wav -s bass -shd
    assert r.headers["x-output-path"] == f"results/{name}"
    out = read(r)[0]
    assert len(out) == 44100 and np.isfinite(out).all() and np.abs(out).max() > 0
    np.testing.assert_array_equal(sf.read(root / "results" / name)[0], out)
    assert not np.array_equal(out, read(plain)[0])  # the diffusion model really ran
    r = client.post("/api/v1/load", json={**voice, "only_diffusion": True})
    assert r.status_code == 200 and r.json()["loaded"]["only_diffusion"], r.text
    r = client.post("/api/v1/convert", data={"options": json.dumps({"speaker": "alto", "k_step": 40})},
                    files={"audio": ("d.wav", song)})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.headers["x-output-path"] == "results/d.wav_0key_alto_diff_pm.flac"
    assert len(read(r)[0]) == 44100
    assert client.post("/api/v1/load", json={"model": "logs/44k/G_0.pth"}).status_code == 200
