"""Web UI and API figures: UI vs CLI on a 10 s clip, API latency for a 1 s VST chunk and a 30 s song.

    .venv/bin/python bench/webui_api.py [--threads 2] [--runs 5] [--tiny] [--out FILE]

In a temporary work folder with the template config (vec768l12, random-init G; encoder/vocoder
files from ``pretrain/`` when present, else random-init stand-ins of the real size, as
bench/infer_speed.py), or ``--tiny`` the test suite's tiny voice:

1. **UI vs CLI**: the web UI (``webui.app``, served on 127.0.0.1) driven in headless Chromium
   loads the voice, uploads a 10 s clip and converts it; time from the click to the result (wall,
   includes the UI's f0 and spectrogram pictures) and the conversion time the UI reports. Then
   ``inference_main.py`` converts the same file with the same settings and thread count (wall time
   of the process, which includes loading the model). Reports whether the output files are
   byte-identical.
2. **API latency**: ``flask_api.py`` started as a real process; median of ``--runs`` requests of
   ``POST /voiceChangeModel`` with a 1 s chunk at 48 kHz (as the VST plug-in sends it) and of
   ``POST /wav2wav`` with a 30 s song (after one warm-up request each).

Results: a table on stdout and JSON in ``bench/results/webui_api_<time>.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

SR = 44100


def make_work(work: Path, tiny: bool) -> dict:
    if tiny:
        from tests.infer_fixtures import make_workdir

        make_workdir(work)
        return {"model": "tiny test voice (tests/infer_fixtures.py)", "speaker": "alto"}
    from bench.infer_speed import make_work as full_work

    info = full_work(work)
    return {
        "model": "template config vec768l12, random-init G",
        **info["sources"],
        "speaker": "spk0",
    }


def wav_bytes(wav: np.ndarray, sr: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wav, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def ui_vs_cli(work: Path, clip: Path, speaker: str, threads: int) -> dict:
    from playwright.sync_api import sync_playwright

    from tests.http_server import free_port
    from webui.app import WebUI

    ui = WebUI(work)
    port = free_port()
    demo = ui.launch("127.0.0.1", port, block=False)
    name = f"{clip.name}_0key_{speaker}_sovits_pm.flac"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])  # fmt: skip
            pg = browser.new_page(viewport={"width": 1280, "height": 1600})
            pg.set_default_timeout(600_000)
            pg.goto(f"http://127.0.0.1:{port}/")
            t = time.perf_counter()
            pg.click("#load_btn")
            pg.wait_for_function(
                "() => document.querySelector('#load_msg textarea').value.startsWith('Loaded')"
            )
            load_s = time.perf_counter() - t
            pg.set_input_files("#input_audio input[type=file]", str(clip))
            pg.wait_for_selector("#input_audio #waveform")
            t = time.perf_counter()
            pg.click("#convert_btn")
            pg.wait_for_function(
                "() => document.querySelector('#convert_msg textarea').value.includes('results/')"
            )
            pg.wait_for_function(
                "() => { const i = document.querySelector('#spec_plot img'); return i && i.naturalWidth > 0 }"
            )
            ui_s = time.perf_counter() - t
            msg = pg.input_value("#convert_msg textarea")
            browser.close()
    finally:
        demo.close()
        ui.cleanup()
    ui_out = work / "results" / name
    ui_bytes = ui_out.read_bytes()
    ui_out.unlink()
    t = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "inference_main.py"), "-m", "logs/44k/G_0.pth", "-c",
                    "logs/44k/config.json", "-n", clip.name, "-s", speaker], cwd=work, check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)})  # fmt: skip
    cli_s = time.perf_counter() - t
    cli_bytes = (work / "results" / name).read_bytes()
    reported = float(msg.split(" in ")[-1].split(" s")[0])
    return {"output": name, "same_bytes": ui_bytes == cli_bytes, "ui_load_s": load_s, "ui_click_to_result_s": ui_s,
            "ui_reported_conversion_s": reported, "cli_process_s": cli_s}  # fmt: skip


def api_latency(work: Path, runs: int, threads: int, speaker: str) -> dict:
    import httpx

    from bench.infer_speed import song
    from common.audio import resample
    from tests.http_server import free_port

    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(ROOT / "flask_api.py"), "-m", "logs/44k/G_0.pth", "-c",
                             "logs/44k/config.json", "--port", str(port)], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=900) as client:
            for _ in range(1200):
                try:
                    if client.get("/api/v1/models").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.25)
            chunk = wav_bytes(resample(song(1.0, seed=7), SR, 48000), 48000)
            full = wav_bytes(song(30.0, seed=8), SR)
            form = {
                "fPitchChange": "0.0",
                "sampleRate": "48000",
                "sSpeakId": "0",
                "fSafePrefixPadLength": "0.0",
            }

            def vst():
                r = client.post(
                    "/voiceChangeModel",
                    data=form,
                    files={"sample": ("temp.wav", chunk, "audio/wav")},
                )
                r.raise_for_status()

            def full_song():
                r = client.post("/wav2wav", data={"spk": speaker, "wav_format": "wav"},
                                files={"audio": ("song.wav", full, "audio/wav")})  # fmt: skip
                r.raise_for_status()

            out = {}
            for key, fn in (("vst_1s", vst), ("wav2wav_30s", full_song)):
                fn()  # warm-up
                times = []
                for _ in range(runs):
                    t = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t)
                out[f"{key}_median_s"] = statistics.median(times)
                out[f"{key}_runs_s"] = times
            return out
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument(
        "--tiny", action="store_true", help="the tests' tiny voice instead of the template config"
    )
    p.add_argument("--out", default=None)
    args = p.parse_args()
    import torch

    from bench.infer_speed import cpu_info, song

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_webui_"))
    try:
        info = make_work(work, args.tiny)
        (work / "raw").mkdir(exist_ok=True)
        clip = work / "raw" / "clip10.wav"
        sf.write(clip, song(10.0, seed=3), SR)
        res = {"machine": cpu_info(), "python": platform.python_version(), "torch": torch.__version__,
               "threads": args.threads, "runs": args.runs, "work": info}  # fmt: skip
        res["ui_vs_cli_10s"] = ui_vs_cli(work, clip, info["speaker"], args.threads)
        res["api"] = api_latency(work, args.runs, args.threads, info["speaker"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    u, a = res["ui_vs_cli_10s"], res["api"]
    print(f"machine: {res['machine'].get('cpu')}, {args.threads} threads, torch {torch.__version__}, "
          f"load {res['machine'].get('loadavg_at_start')}")  # fmt: skip
    print(f"model: {info['model']}")
    print(f"{'figure':44s} {'value':>10s}")
    rows = [("UI 10 s clip: click to result (s)", u["ui_click_to_result_s"]),
            ("UI 10 s clip: conversion reported (s)", u["ui_reported_conversion_s"]),
            ("CLI 10 s clip: process incl. model load (s)", u["cli_process_s"]),
            ("UI and CLI outputs byte-identical", u["same_bytes"]),
            (f"VST 1 s chunk, median of {args.runs} (s)", a["vst_1s_median_s"]),
            (f"full song 30 s, median of {args.runs} (s)", a["wav2wav_30s_median_s"])]  # fmt: skip
    for k, v in rows:
        print(f"{k:44s} {str(v) if isinstance(v, bool) else f'{v:.2f}':>10}")
    out = (
        Path(args.out)
        if args.out
        else ROOT / "bench" / "results" / f"webui_api_{time.strftime('%Y%m%d_%H%M%S')}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
