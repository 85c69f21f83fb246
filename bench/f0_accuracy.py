"""Accuracy and speed of every f0 predictor on annotated recordings in ``shared/data``.

    python bench/f0_accuracy.py [--data ../shared/data] [--predictors pm,dio,...] [--threads 2]

Data (formats from the folders' LICENSE/README files):

- ``vocadito/vocadito_1.wav`` (44.1 kHz solo singing) with ``vocadito_1_f0.csv``: ``time_s,f0_hz``
  every 256/44100 s, 0 = unvoiced (manual annotation).
- ``ptdb-tug/mic_*.wav`` (48 kHz speech) with ``ref_*.f0``: one row per 10 ms, columns f0_Hz,
  voicing, energy, autocorrelation (from the laryngograph). The README puts frame i "at i·10 ms";
  that is the start of PTDB-TUG's 32 ms analysis window, whose centre is i·10 ms + 16 ms. The
  centre is used (``--ptdb-offset-ms 16``): every predictor agrees best with the reference
  around +10…+20 ms (see ``best_lag_ms``), and at 0 ms all of them lose 20–30 points of RPA.

Every file is brought to 44.1 kHz (soxr, as preprocessing does) and, like ``resample.py`` does
before preprocessing, peak-normalised to 1.0 (``--no-normalize`` keeps the level; it matters for
crepe, whose −60 dB A-weighted silence gate removes voiced frames of quiet recordings such as
vocadito_1, peak 0.12). Then it is run through
``get_f0_predictor(name, 512, 44100).compute_f0_uv(wav, len(wav)//512)``; frame i is at
``i·512/44100`` s. The reference is sampled at those times (voicing from the nearest reference
frame; f0 linearly interpolated in cents between voiced neighbours). Metrics, over frames where
the reference is voiced:

- ``rpa``: raw pitch accuracy, |est − ref| ≤ 50 cents, est = the interpolated f0 the pipeline uses;
- ``rpa_voiced``: the same but frames the predictor calls unvoiced count as wrong;
- ``rmse_cents`` / ``median_abs_cents``: of est − ref (interpolated est);
- ``voicing_precision`` / ``voicing_recall``: of the predictor's uv against the reference voicing;
- ``best_lag_ms``: the reference shift (−40…+40 ms, 2 ms steps) with the highest RPA (a check of
  the time alignment; 0 = the alignment used is the best one).

Speed: audio seconds per processing second (× realtime) with ``torch.set_num_threads(threads)``,
after a warm-up call (model loading and JIT compilation are reported separately as ``load_s``).
Writes ``bench/results/f0_accuracy.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SR = 44100
HOP = 512
DEFAULT_PREDICTORS = ["pm", "dio", "harvest", "crepe", "crepe-tiny", "rmvpe", "fcpe",
                      "fcpe-bundled"]  # fmt: skip


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_reference(kind: str, path: Path, ptdb_offset_s: float = 0.016):
    """(times s, f0 Hz with 0 = unvoiced)."""
    if kind == "vocadito":
        data = np.loadtxt(path, delimiter=",", ndmin=2)
        return data[:, 0], data[:, 1]
    data = np.loadtxt(path, ndmin=2)  # ptdb-tug: f0, voicing, energy, autocorr; 10 ms frames
    f0 = np.where(data[:, 1] > 0, data[:, 0], 0.0)
    return np.arange(len(f0)) * 0.010 + ptdb_offset_s, f0


def sample_reference(times: np.ndarray, f0: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Reference f0 at times ``at`` (0 = unvoiced)."""
    idx = np.clip(np.searchsorted(times, at), 1, len(times) - 1)
    left, right = idx - 1, idx
    nearest = np.where(np.abs(times[left] - at) <= np.abs(times[right] - at), left, right)
    out = f0[nearest].astype(np.float64)
    both = (f0[left] > 0) & (f0[right] > 0) & (out > 0)
    span = np.maximum(times[right] - times[left], 1e-12)
    w = np.clip((at - times[left]) / span, 0, 1)
    cl = 1200 * np.log2(np.where(both, f0[left], 1.0))
    cr = 1200 * np.log2(np.where(both, f0[right], 1.0))
    out[both] = 2 ** (((1 - w) * cl + w * cr)[both] / 1200)
    out[at > times[-1] + (times[1] - times[0])] = 0.0
    return out


def metrics(ref: np.ndarray, f0: np.ndarray, uv: np.ndarray) -> dict:
    rv = ref > 0
    ev = uv > 0
    n = min(len(ref), len(f0))
    ref, f0, uv, rv, ev = ref[:n], f0[:n], uv[:n], rv[:n], ev[:n]
    with np.errstate(divide="ignore", invalid="ignore"):
        cents = 1200 * np.log2(np.where(f0 > 0, f0, np.nan) / np.where(rv, ref, np.nan))
    c = cents[rv]
    ok = np.abs(np.nan_to_num(c, nan=1e9)) <= 50
    finite = np.isfinite(c)
    return {
        "frames": int(n),
        "ref_voiced_frames": int(rv.sum()),
        "rpa": float(ok.mean()) if rv.any() else None,
        "rpa_voiced": float((ok & ev[rv]).mean()) if rv.any() else None,
        "rmse_cents": float(np.sqrt(np.mean(c[finite] ** 2))) if finite.any() else None,
        "median_abs_cents": float(np.median(np.abs(c[finite]))) if finite.any() else None,
        "voicing_precision": float((ev & rv).sum() / ev.sum()) if ev.any() else None,
        "voicing_recall": float((ev & rv).sum() / rv.sum()) if rv.any() else None,
    }


def find_files(data: Path) -> list[dict]:
    files = []
    voc = data / "vocadito"
    for wav in sorted(voc.glob("vocadito_*.wav")):
        ref = voc / f"{wav.stem}_f0.csv"
        if ref.is_file():
            files.append({"name": wav.stem, "kind": "vocadito", "wav": wav, "ref": ref})
    ptdb = data / "ptdb-tug"
    for wav in sorted(ptdb.glob("mic_*.wav")):
        ref = ptdb / f"ref_{wav.stem[4:]}.f0"
        if ref.is_file():
            files.append({"name": f"ptdb_{wav.stem[4:]}", "kind": "ptdb", "wav": wav, "ref": ref})
    return files


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--predictors", default=",".join(DEFAULT_PREDICTORS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "f0_accuracy.json"))
    ap.add_argument("--ptdb-offset-ms", type=float, default=16.0)
    ap.add_argument("--no-normalize", action="store_true", help="keep the files' level")
    args = ap.parse_args(argv)

    import torch

    from common.audio import load_audio
    from modules.f0 import F0ModelMissing, get_f0_predictor

    torch.set_num_threads(args.threads)
    data = Path(args.data)
    if not data.is_dir():
        print(f"f0_accuracy: {data} not found (annotated recordings in vocadito/ or ptdb-tug/ "
              "there; pass --data)", file=sys.stderr)  # fmt: skip
        return 1
    files = find_files(data)
    if not files:
        print(f"no annotated files under {data}", file=sys.stderr)
        return 1
    audio, refs = {}, {}
    for f in files:
        wav, _ = load_audio(f["wav"], sr=SR)
        if not args.no_normalize:
            wav = (wav / max(float(np.abs(wav).max()), 1e-9)).astype(np.float32)
        n = len(wav) // HOP
        times = np.arange(n) * HOP / SR
        rt, rf = load_reference(f["kind"], f["ref"], args.ptdb_offset_ms / 1000)
        refs[f["name"]] = (rt, rf, times)
        audio[f["name"]] = (wav, sample_reference(rt, rf, times))

    pretrain_fcpe = Path("pretrain/fcpe.pt").is_file()
    results = []
    for name in [p.strip() for p in args.predictors.split(",") if p.strip()]:
        entry = {"predictor": name}
        if name == "fcpe-bundled" and not pretrain_fcpe:
            entry["skipped"] = (
                "same model as 'fcpe' (no pretrain/fcpe.pt, so fcpe uses the bundled one)"
            )
            results.append(entry)
            continue
        t0 = time.perf_counter()
        try:
            pred = get_f0_predictor(name, HOP, SR, device=args.device, threshold=0.05)
            pred.compute_f0_uv(audio[files[0]["name"]][0][: SR // 2])  # warm-up (JIT, caches)
        except (F0ModelMissing, FileNotFoundError) as e:
            entry["skipped"] = str(e).split(". ")[0]
            results.append(entry)
            print(f"{name}: skipped ({entry['skipped']})", flush=True)
            continue
        entry["load_s"] = round(time.perf_counter() - t0, 3)
        if hasattr(pred, "format"):
            entry["model"] = f"{pred.format}: {pred.model_path}"
        elif hasattr(pred, "model"):
            entry["model"] = pred.model
        entry["files"] = {}
        tot_audio = tot_time = 0.0
        for f in files:
            wav, ref = audio[f["name"]]
            t = time.perf_counter()
            f0, uv = pred.compute_f0_uv(wav, len(wav) // HOP)
            dt = time.perf_counter() - t
            m = metrics(ref, f0, uv)
            rt, rf, times = refs[f["name"]]
            lags = np.arange(-40, 41, 2)
            scan = [metrics(sample_reference(rt + lag / 1000, rf, times), f0, uv)["rpa"] or 0
                    for lag in lags]  # fmt: skip
            m["best_lag_ms"] = int(lags[int(np.argmax(scan))])
            m["seconds"] = round(dt, 3)
            m["x_realtime"] = round(len(wav) / SR / dt, 3)
            entry["files"][f["name"]] = m
            tot_audio += len(wav) / SR
            tot_time += dt
            print(f"{name:13s} {f['name']:12s} rpa={m['rpa']:.3f} "
                  f"rmse={m['rmse_cents']:.1f}c x{m['x_realtime']:.2f}", flush=True)  # fmt: skip
        entry["x_realtime"] = round(tot_audio / tot_time, 3)
        results.append(entry)

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    report = {
        "machine": {
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "load_average_at_end": load,
            "threads": args.threads,
            "peak_normalized": not args.no_normalize,
            "ptdb_offset_ms": args.ptdb_offset_ms,
            "device": args.device,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "hop": HOP,
        "sampling_rate": SR,
        "files": {
            f["name"]: {
                "wav": str(f["wav"]),
                "reference": str(f["ref"]),
                "seconds": round(len(audio[f["name"]][0]) / SR, 3),
                "ref_voiced_frames": int((audio[f["name"]][1] > 0).sum()),
            }
            for f in files
        },  # fmt: skip
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print()
    print(format_table(report))
    print(f"\nwritten {out}")
    return 0


def format_table(report: dict) -> str:
    mc = report["machine"]
    lines = [
        f"machine: {mc['cpu']} ({mc['cpu_count']} CPUs, load avg at end {mc['load_average_at_end']}),"
        f" torch {mc['torch']}, {mc['threads']} threads, device {mc['device']}",
        "",
        "| predictor | file | RPA 50c | RPA (voiced only) | RMSE cents | median |cents| "
        "| voicing P | voicing R | best lag ms | × realtime |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(v, fmt):
        return "–" if v is None else format(v, fmt)

    for e in report["results"]:
        if "skipped" in e:
            lines.append(f"| {e['predictor']} | – | skipped: {e['skipped']} ||||||||")
            continue
        for name, m in e["files"].items():
            lines.append(
                f"| {e['predictor']} | {name} | {f(m['rpa'], '.3f')} | {f(m['rpa_voiced'], '.3f')} "
                f"| {f(m['rmse_cents'], '.1f')} | {f(m['median_abs_cents'], '.1f')} "
                f"| {f(m['voicing_precision'], '.3f')} | {f(m['voicing_recall'], '.3f')} "
                f"| {m['best_lag_ms']} | {f(m['x_realtime'], '.2f')} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
