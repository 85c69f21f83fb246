"""ONNX Runtime against our torch paths: the synthesizer on 10 s and 3 min, template config.

    nice -n 19 .venv/bin/python bench/onnx_speed.py [--threads 2] [--long 180] [--out FILE]

Everything runs in a temporary folder on a random-init generator of the template config
(vec768l12, 44.1 kHz, one speaker; speed does not depend on the weights' values):

1. export: ``onnx_export``'s synthesizer (seconds, file size) and the int8 variant
   (``onnxruntime.quantization.quantize_dynamic``, weights of MatMul/Gemm int8);
2. parity: the exported graph (ONNX Runtime, the fed form) against ``SynthesizerTrn.infer``
   (weight norm kept, as loaded) at 37, 200 and 861 frames: max |Δ| and SNR;
3. speed, each path in a fresh process (so that its peak RSS is its own), ``--threads`` threads:
   ``torch-fp32`` (Svc's default: weight norm folded, channels-last decoder, ``inference_mode``),
   ``torch-bf16`` (``--precision bf16``), ONNX Runtime at graph optimisation levels ``disable``,
   ``basic``, ``extended``, ``all``, and ``ort-int8``. Each path: 10 s input (861 frames), median
   of ``--runs`` after a warm-up; then (torch-fp32, torch-bf16, ORT ``all``, each in another fresh
   process) the ``--long`` input cut into 30 s pieces as ``Svc`` does (``max_chunk_seconds``), one
   run. Real-time factor = run time / audio time. SNR of each path against torch-fp32 on the 10 s
   input (same seeded noise). The JSON is rewritten after every step.

Measured on the template model: the int8 file is 135.3 MB against 135.1 MB, i.e. dynamic
quantization of MatMul/Gemm leaves the graph practically unchanged (nearly all weights are
convolutions, including the attention projections); quantizing Conv (ConvInteger) was not tried.
fp16 ONNX is not tried: the CPU execution provider has no fp16 convolution kernels, so a
float16 graph runs through casts and is slower. Results: a table on stdout and JSON in
``bench/results/onnx_speed_<time>.json``. The machine may be shared: the load average at the start
and the end is recorded; run it niced.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

SR, HOP = 44100, 512
CHUNK_FRAMES = int(30 * SR / HOP)  # Svc's max_chunk_seconds = 30
PATHS = (
    "torch-fp32",
    "torch-bf16",
    "ort-disable",
    "ort-basic",
    "ort-extended",
    "ort-all",
    "ort-int8",
)
LONG_PATHS = ("torch-fp32", "torch-bf16", "ort-all")


def machine() -> dict:
    info = {"machine": platform.machine(), "logical_cpus": os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version()}  # fmt: skip
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def make_work(work: Path) -> None:
    from tests.infer_fixtures import write_random_checkpoint

    cfg = json.loads((ROOT / "configs_template" / "config_template.json").read_text())
    cfg["spk"] = {"spk0": 0}
    cfg["model"]["n_speakers"] = 1
    (work / "config.json").write_text(json.dumps(cfg))
    write_random_checkpoint(cfg, work / "G_0.pth")


def inputs(frames: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(1, 768, frames, generator=g)
    t = torch.arange(frames) / (SR / HOP)
    f0 = (220 * 2 ** (0.2 * torch.sin(2 * np.pi * 5 * t)))[None]
    uv = torch.ones(1, frames)
    return c, f0, uv, torch.LongTensor([[0]])


def snr(ref: np.ndarray, out: np.ndarray) -> float:
    return float(10 * np.log10((ref**2).sum() / max(((ref - out) ** 2).sum(), 1e-30)))


# ------------------------------------------------------------------------------ worker process
def make_runner(work: Path, path: str, threads: int):
    """A function ``frames -> audio`` for ``path`` (see the module docstring)."""
    torch.set_num_threads(threads)
    if path.startswith("torch"):
        from inference.infer_tool import BF16_TILE
        from modules.fast_conv import channels_last_convs
        from onnxexport.loading import load_synthesizer

        # what Svc.load_model does on the CPU: fold weight norm, channels-last decoder (tiled
        # for bf16)
        net, _ = load_synthesizer(work / "G_0.pth", work / "config.json")
        net.remove_weight_norm()
        bf16 = path == "torch-bf16"
        channels_last_convs(net.dec, tile=BF16_TILE if bf16 else None)

        def run(c, f0, uv, sid):
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                return net.infer(c, f0, uv, g=sid, noice_scale=0.4)[0].float().numpy()

        return run
    from onnxexport.runtime import OrtSynthesizer

    model = work / ("synth_int8.onnx" if path == "ort-int8" else "synth.onnx")
    level = "all" if path == "ort-int8" else path.split("-")[1]
    ort = OrtSynthesizer(model, threads=threads, optimization=level)

    def run(c, f0, uv, sid):
        return ort.infer(c, f0, uv, g=sid, noice_scale=0.4)[0].numpy()

    return run


def peak_rss_mb() -> float:
    """This process's peak resident memory (``VmHWM``). Not ``ru_maxrss``: Linux carries that
    across ``exec`` from the parent, so every worker would report at least the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(work: Path, path: str, threads: int, long_seconds: float, runs: int) -> dict:
    t0 = time.perf_counter()
    run = make_runner(work, path, threads)
    out = {"path": path, "load_s": time.perf_counter() - t0}
    if long_seconds > 0:  # the long input only (a second worker process)
        total = int(long_seconds * SR / HOP)
        t = time.perf_counter()
        for start in range(0, total, CHUNK_FRAMES):
            run(*inputs(min(CHUNK_FRAMES, total - start), seed=start))
        took = time.perf_counter() - t
        out["long"] = {"seconds": long_seconds, "time_s": took, "rtf": took / (total * HOP / SR)}
        out["peak_rss_mb"] = peak_rss_mb()
        return out
    x = inputs(861)
    audio = run(*x)  # warm-up
    times, cpu = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        run(*x)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    np.save(work / f"out_{path}.npy", audio)
    # cpu_s (all threads) is less disturbed than wall time when the machine is shared
    out["10s"] = {"times_s": times, "median_s": statistics.median(times), "cpu_s": cpu,
                  "rtf": statistics.median(times) / (861 * HOP / SR)}  # fmt: skip
    out["peak_rss_mb"] = peak_rss_mb()
    return out


# ------------------------------------------------------------------------------ main process
def export_all(work: Path) -> dict:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from onnxexport.export import export_synthesizer_file

    res = export_synthesizer_file(
        work / "G_0.pth", work / "config.json", work / "synth.onnx", fed=True
    )
    t = time.perf_counter()
    quantize_dynamic(str(work / "synth.onnx"), str(work / "synth_int8.onnx"),
                     op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8)  # fmt: skip
    q_time = time.perf_counter() - t
    onnx.checker.check_model(str(work / "synth_int8.onnx"))
    return {"export_s": res.seconds, "size_mb": (work / "synth.onnx").stat().st_size / 1e6,
            "int8_quantize_s": q_time, "int8_size_mb": (work / "synth_int8.onnx").stat().st_size / 1e6}  # fmt: skip


def parity(work: Path, threads: int) -> list[dict]:
    from common.checkpoint import load_checkpoint
    from common.hparams import load_config
    from models import SynthesizerTrn
    from onnxexport.runtime import OrtSynthesizer

    torch.set_num_threads(threads)
    hps = load_config(work / "config.json")
    net = SynthesizerTrn(1025, hps.train.segment_size // HOP, **hps.model.to_dict())
    load_checkpoint(work / "G_0.pth", net)
    net.eval()
    ort = OrtSynthesizer(work / "synth.onnx", threads=threads)
    rows = []
    for frames in (37, 200, 861):
        x = inputs(frames, seed=frames)
        ref = net.infer(*x[:3], g=x[3], noice_scale=0.4)[0].numpy().ravel()
        got = ort.infer(*x[:3], g=x[3], noice_scale=0.4)[0].numpy().ravel()
        rows.append({"frames": frames, "max_abs_diff": float(np.abs(ref - got).max()),
                     "snr_db": snr(ref, got)})  # fmt: skip
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--long", type=float, default=180.0, help="long input in seconds (0: skip)")
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    p.add_argument("--runs", type=int, default=3, help="timed runs of the 10 s input per path")
    p.add_argument("--out", type=str, default=None)
    p.add_argument("--worker", nargs=2, metavar=("WORK", "PATH"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        r = worker(Path(args.worker[0]), args.worker[1], args.threads, args.long, args.runs)
        print(json.dumps(r))
        return 0

    stamp = time.strftime("%Y%m%d_%H%M%S")
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"onnx_speed_{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine(), "threads": args.threads, "load_avg_start": os.getloadavg()}

    def save():  # after every step, so that an interrupted run keeps what it measured
        result["load_avg_end"] = os.getloadavg()
        out.write_text(json.dumps(result, indent=2))

    def spawn(work, path, long_seconds):
        proc = subprocess.run([sys.executable, __file__, "--worker", str(work), path, "--threads",
                               str(args.threads), "--long", str(long_seconds), "--runs", str(args.runs)],
                              capture_output=True, text=True,
                              env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))  # fmt: skip
        if proc.returncode != 0:
            print(f"{path}: failed\n{proc.stderr[-2000:]}", flush=True)
            return None
        return json.loads(proc.stdout.strip().splitlines()[-1])

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_work(work)
        result["export"] = export_all(work)
        save()
        print(f"export {result['export']['export_s']:.1f} s ({result['export']['size_mb']:.0f} MB); "
              f"int8 {result['export']['int8_quantize_s']:.1f} s", flush=True)  # fmt: skip
        result["parity"] = parity(work, args.threads)
        save()
        for r in result["parity"]:
            print(f"parity T={r['frames']}: max|diff| {r['max_abs_diff']:.2e}, "
                  f"SNR {r['snr_db']:.1f} dB", flush=True)  # fmt: skip
        result["paths"] = {}
        for path in args.paths:
            r = spawn(work, path, 0)
            if r is None:
                continue
            result["paths"][path] = r
            ref_path = work / "out_torch-fp32.npy"
            if ref_path.exists():
                ref = np.load(ref_path).ravel()
                for name, done in result["paths"].items():
                    done["snr_db_vs_torch_fp32"] = snr(
                        ref, np.load(work / f"out_{name}.npy").ravel()
                    )
            save()
            print(
                f"{path}: 10 s RTF {r['10s']['rtf']:.3f}, peak RSS {r['peak_rss_mb']:.0f} MB",
                flush=True,
            )
        for path in (p for p in LONG_PATHS if p in result["paths"] and args.long > 0):
            r = spawn(work, path, args.long)
            if r is None:
                continue
            result["paths"][path]["long"] = r["long"]
            result["paths"][path]["long_peak_rss_mb"] = r["peak_rss_mb"]
            save()
            print(f"{path}: {args.long:.0f} s RTF {r['long']['rtf']:.3f}, "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
    save()
    print(f"\n{'path':<14}{'10 s RTF':>10}{'long RTF':>10}{'peak MB':>9}{'SNR vs fp32':>13}")
    for path, r in result["paths"].items():
        long_rtf = f"{r['long']['rtf']:.3f}" if "long" in r else "-"
        peak = max(r["peak_rss_mb"], r.get("long_peak_rss_mb", 0))
        print(f"{path:<14}{r['10s']['rtf']:>10.3f}{long_rtf:>10}{peak:>9.0f}"
              f"{r.get('snr_db_vs_torch_fp32', float('nan')):>12.1f} dB")  # fmt: skip
    print(f"machine: {result['machine']}, threads {args.threads}, load avg {result['load_avg_start']} → "
          f"{result['load_avg_end']}")  # fmt: skip
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
