"""Training speed: seconds per step and peak memory, template and tiny configs.

Each config runs in its own process (so the peak RSS is its own) and performs the real training
step of :func:`training.trainer.train_step` (G forward, D step, G step, AdamW, grad norms) on a
synthetic batch: ``batch_size`` items (default: the template's 6) of ``--frames`` frames each
(default 431 = 5 s, a typical sliced utterance; items longer than 800 frames are cut to 790).

    python bench/train_speed.py                       # CPU, fp32, template + tiny
    python bench/train_speed.py --device cuda --amp fp16 bf16 none

Writes JSON (default ``bench/results/train_speed.json``) and prints a table with the machine,
thread count and torch version. On the CPU, peak memory is the process's peak RSS; on CUDA it is
``torch.cuda.max_memory_allocated`` (plus the RSS).
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _child(args) -> dict:
    import torch

    from common.hparams import HParams
    from models import MultiPeriodDiscriminator, SynthesizerTrn
    from modules.mel_processing import spectrogram_torch
    from training.synthetic import template_config
    from training.trainer import StepContext, train_step

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = template_config({f"spk{i}": i for i in range(5)}, tiny=args.config == "tiny")
    cfg["model"]["n_speakers"] = 200  # the template's value
    if args.amp != "none":
        cfg["train"]["fp16_run"] = True
        cfg["train"]["half_type"] = args.amp
    hps = HParams(**cfg)
    device = torch.device(args.device)
    hop = hps.data.hop_length
    net_g = SynthesizerTrn(hps.data.filter_length // 2 + 1, hps.train.segment_size // hop,
                           **hps.model).to(device)  # fmt: skip
    net_d = MultiPeriodDiscriminator().to(device)
    t = hps.train
    optim_g = torch.optim.AdamW(net_g.parameters(), t.learning_rate, betas=t.betas, eps=t.eps)
    optim_d = torch.optim.AdamW(net_d.parameters(), t.learning_rate, betas=t.betas, eps=t.eps)
    ctx = StepContext.create(hps, net_g, net_d, optim_g, optim_d, device)

    b = args.batch_size or int(t.batch_size)
    n = args.frames
    gen = torch.Generator().manual_seed(0)
    time_axis = torch.arange(n * hop) / hps.data.sampling_rate
    f0_hz = 220.0 * (1 + 0.5 * torch.rand(b, 1, generator=gen))
    y = 0.5 * torch.sin(2 * torch.pi * f0_hz * time_axis)[:, None, :]
    y = y + 0.01 * torch.randn(y.shape, generator=gen)
    spec = spectrogram_torch(y.squeeze(1), hps.data.filter_length, hps.data.sampling_rate, hop,
                             hps.data.win_length)  # fmt: skip
    batch = {
        "c": torch.randn(b, hps.model.ssl_dim, n, generator=gen),
        "f0": f0_hz.expand(b, n).contiguous(),
        "spec": spec,
        "y": y,
        "g": torch.randint(0, 5, (b, 1), generator=gen),
        "lengths": torch.full((b,), n, dtype=torch.long),
        "uv": torch.ones(b, n),
        "volume": None,
    }
    batch = {k: (v.to(device) if v is not None else None) for k, v in batch.items()}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        train_step(ctx, **batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    n_g = sum(p.numel() for p in net_g.parameters())
    n_d = sum(p.numel() for p in net_d.parameters())
    out = {
        "config": args.config,
        "device": args.device,
        "amp": args.amp,
        "batch_size": b,
        "frames": n,
        "steps": args.steps,
        "sec_per_step_median": statistics.median(times),
        "sec_per_step_min": min(times),
        "sec_per_step_all": times,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_avg_1m_after": os.getloadavg()[0],  # the machine may be shared: context for timings
        "params_g": n_g,
        "params_d": n_d,
    }
    if device.type == "cuda":
        out["peak_cuda_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["gpu"] = torch.cuda.get_device_name()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--configs", nargs="+", default=["template", "tiny"],
                   choices=["template", "tiny"])  # fmt: skip
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--amp", nargs="+", default=None, choices=["none", "fp16", "bf16"],
                   help="default: none on the CPU; none, fp16 and bf16 on CUDA")  # fmt: skip
    p.add_argument("--batch_size", type=int, default=None, help="default: the template's (6)")
    p.add_argument("--frames", type=int, default=431, help="frames per item (431 = 5 s)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "train_speed.json"))
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        args.amp = args.amp[0]
        print("RESULT " + json.dumps(_child(args)))
        return 0

    import torch

    amps = args.amp or (["none", "fp16", "bf16"] if args.device == "cuda" else ["none"])
    results = []
    for config in args.configs:
        for amp in amps:
            cmd = [sys.executable, __file__, "--_child", "--config", config, "--device",
                   args.device, "--amp", amp, "--frames", str(args.frames), "--steps",
                   str(args.steps), "--warmup", str(args.warmup), "--threads",
                   str(args.threads)]  # fmt: skip
            if args.batch_size:
                cmd += ["--batch_size", str(args.batch_size)]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                print(f"{config}/{amp}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                results.append({"config": config, "amp": amp, "error": proc.stderr[-2000:]})
                continue
            results.append(json.loads(line[len("RESULT ") :]))
    report = {
        "machine": {
            "cpu": _cpu_name(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },  # fmt: skip
        "torch": torch.__version__,
        "threads": args.threads,
        "device": args.device,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_avg_1m_at_end": os.getloadavg()[0],
        "results": results,
    }
    out = Path(args.out)
    from common.atomic import write_text

    write_text(out, json.dumps(report, indent=2) + "\n")
    print(f"machine: {report['machine']['cpu']} ({os.cpu_count()} CPUs), torch {torch.__version__},"
          f" {args.threads} threads, device {args.device}")  # fmt: skip
    hdr = f"{'config':9} {'amp':5} {'batch':>5} {'frames':>6} {'s/step (median)':>16} " \
          f"{'s/step (min)':>13} {'peak RSS MB':>12} {'peak CUDA MB':>13}"  # fmt: skip
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        if "error" in r:
            print(f"{r['config']:9} {r['amp']:5} failed")
            continue
        cuda = f"{r['peak_cuda_allocated_mb']:.0f}" if "peak_cuda_allocated_mb" in r else "-"
        print(f"{r['config']:9} {r['amp']:5} {r['batch_size']:>5} {r['frames']:>6} "
              f"{r['sec_per_step_median']:>16.2f} {r['sec_per_step_min']:>13.2f} "
              f"{r['peak_rss_mb']:>12.0f} {cuda:>13}")  # fmt: skip
    print(f"written: {out}")
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
