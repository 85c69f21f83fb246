"""Training speed: seconds per step and peak memory, template and tiny configs.

Each config runs in its own process (so the peak RSS is its own) and performs the real training
step of :func:`training.trainer.train_step` (G forward, D step, G step, AdamW, grad norms) on a
synthetic batch: ``batch_size`` items (default: the template's 6) of ``--frames`` frames each
(default 431 = 5 s, a typical sliced utterance; items longer than 800 frames are cut to 790).

    python bench/train_speed.py                       # CPU: fp32 and bf16, template + tiny
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


def _build(args, amp: str):
    import torch

    from common.hparams import HParams
    from models import MultiPeriodDiscriminator, SynthesizerTrn
    from training.synthetic import template_config, tiny_config

    spk = {f"spk{i}": i for i in range(5)}
    if args.config == "micro":  # the tests' tiny model (the discriminator keeps its size)
        cfg = tiny_config(spk, ssl_dim=8, segment_frames=4)
    else:
        cfg = template_config(spk, tiny=args.config == "tiny")
        cfg["model"]["n_speakers"] = 200  # the template's value
    if amp != "none":
        cfg["train"]["fp16_run"] = True
        cfg["train"]["half_type"] = amp
    hps = HParams(**cfg)
    torch.manual_seed(0)
    net_g = SynthesizerTrn(hps.data.filter_length // 2 + 1,
                           hps.train.segment_size // hps.data.hop_length, **hps.model)  # fmt: skip
    net_d = MultiPeriodDiscriminator()
    return hps, net_g, net_d


def _optims(hps, net_g, net_d):
    import torch

    t = hps.train
    kw = dict(lr=t.learning_rate, betas=tuple(t.betas), eps=t.eps)
    return torch.optim.AdamW(net_g.parameters(), **kw), torch.optim.AdamW(net_d.parameters(), **kw)


def _child(args) -> dict:
    """Alternate our step and the straightforward 4.1 step (same weights, same batch), so both
    see the same machine load; report the medians of each."""
    import torch

    from training.reference_step import reference_train_step
    from training.speed import speed_up
    from training.synthetic import synthetic_batch
    from training.trainer import StepContext, train_step

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    hps, net_g, net_d = _build(args, args.amp)
    hps_ref, g_ref, d_ref = _build(args, "none")  # the reference runs fp32
    g_ref.load_state_dict(net_g.state_dict())
    d_ref.load_state_dict(net_d.state_dict())
    if args.channels_last:
        net_d.to(memory_format=torch.channels_last)
    net_g, net_d, g_ref, d_ref = (m.to(device).train() for m in (net_g, net_d, g_ref, d_ref))
    optim_g, optim_d = _optims(hps, net_g, net_d)
    ref_g, ref_d = _optims(hps_ref, g_ref, d_ref)
    speedups = [] if args.no_speedups else speed_up(net_g, (optim_g, optim_d), device)
    ctx = StepContext.create(hps, net_g, net_d, optim_g, optim_d, device)
    ref_scaler = torch.amp.GradScaler(device.type, enabled=False)

    b = args.batch_size or int(hps.train.batch_size)
    n = args.frames
    batch = synthetic_batch(hps, b, n, seed=0)
    batch = {k: (v.to(device) if v is not None else None) for k, v in batch.items()}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def timed(fn):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, time.process_time() - c0, out

    times = {"ours": [], "reference": []}
    cpu = {"ours": [], "reference": []}
    losses = {"ours": [], "reference": []}
    for i in range(args.warmup + args.steps):
        order = ("ours", "reference") if i % 2 == 0 else ("reference", "ours")
        for who in order:
            torch.manual_seed(1000 + i)
            if who == "ours":
                w, c, out = timed(lambda: train_step(ctx, **batch))
                out = {k: float(v) for k, v in out.items() if k.startswith("loss")}
            elif args.no_reference:
                continue
            else:
                w, c, out = timed(lambda: reference_train_step(hps_ref, g_ref, d_ref, ref_g,
                                                               ref_d, ref_scaler, **batch))  # fmt: skip
            losses[who].append(out)
            if i >= args.warmup:
                times[who].append(w)
                cpu[who].append(c)
    n_g = sum(p.numel() for p in net_g.parameters())
    n_d = sum(p.numel() for p in net_d.parameters())
    out = {
        "config": args.config,
        "device": args.device,
        "amp": args.amp,
        "channels_last": bool(args.channels_last),
        "speedups": speedups,
        "batch_size": b,
        "frames": n,
        "steps": args.steps,
        "sec_per_step_median": statistics.median(times["ours"]),
        "sec_per_step_min": min(times["ours"]),
        "sec_per_step_all": times["ours"],
        "cpu_sec_per_step_median": statistics.median(cpu["ours"]),
        "losses": losses["ours"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load_avg_1m_after": os.getloadavg()[0],  # the machine may be shared: context for timings
        "params_g": n_g,
        "params_d": n_d,
    }
    if times["reference"]:
        out.update(
            ref_sec_per_step_median=statistics.median(times["reference"]),
            ref_sec_per_step_all=times["reference"],
            ref_cpu_sec_per_step_median=statistics.median(cpu["reference"]),
            ref_losses=losses["reference"],
            speedup=statistics.median(times["reference"]) / statistics.median(times["ours"]),
        )
    if device.type == "cuda":
        out["peak_cuda_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["gpu"] = torch.cuda.get_device_name()
    return out


def _loss_trace(args) -> dict:
    """Losses of the first ``args.loss_steps`` steps of our step from one seed, fp32 and
    ``args.trace_amp``: ``{"fp32": [...], amp: [...], "max_rel_diff": {loss: x}}``."""
    import torch

    from training.speed import speed_up
    from training.synthetic import synthetic_batch
    from training.trainer import StepContext, train_step

    torch.set_num_threads(args.threads)
    runs = {}
    for amp in ("none", args.trace_amp):
        hps, net_g, net_d = _build(args, amp)
        net_g.train()
        net_d.train()
        og, od = _optims(hps, net_g, net_d)
        speed_up(net_g, (og, od), torch.device(args.device))  # as the trainer
        ctx = StepContext.create(hps, net_g, net_d, og, od, torch.device(args.device))
        batch = synthetic_batch(hps, args.batch_size or 2, args.frames, seed=0)
        trace = []
        for i in range(args.loss_steps):
            torch.manual_seed(1000 + i)
            out = train_step(ctx, **batch)
            trace.append({k: float(v) for k, v in out.items() if k.startswith("loss")})
        runs[amp] = trace
    keys = [k for k in runs["none"][0] if any(r[k] != 0 for r in runs["none"])]
    rel = {k: max(abs(a[k] - b[k]) / max(abs(a[k]), 1e-8)
                  for a, b in zip(runs["none"], runs[args.trace_amp])) for k in keys}  # fmt: skip
    return {"config": args.config, "steps": args.loss_steps, "amp": args.trace_amp,
            "batch_size": args.batch_size or 2, "frames": args.frames, "fp32": runs["none"],
            args.trace_amp: runs[args.trace_amp], "max_rel_diff": rel}  # fmt: skip


def _spawn(args, extra: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--_child", "--device", args.device, "--frames",
           str(args.frames), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--threads", str(args.threads), *extra]  # fmt: skip
    if args.batch_size:
        cmd += ["--batch_size", str(args.batch_size)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        print(f"{' '.join(extra)}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
        return {"error": proc.stderr[-2000:]}
    return json.loads(line[len("RESULT ") :])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--configs", nargs="+", default=["template", "tiny"],
                   choices=["template", "tiny", "micro"])  # fmt: skip
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--amp", nargs="+", default=None, choices=["none", "fp16", "bf16"],
                   help="default: none and bf16 on the CPU; none, fp16 and bf16 on CUDA")  # fmt: skip
    p.add_argument(
        "--channels_last",
        choices=["no", "yes", "both"],
        default="no",
        help="discriminator in channels-last memory format (amp runs)",
    )
    p.add_argument("--speedups", choices=["on", "off", "both"], default="on",
                   help="our step with training.speed's CPU speed-ups (channels-last decoder, "
                        "fused AdamW), without them, or both")  # fmt: skip
    p.add_argument("--no_speedups", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--batch_size", type=int, default=None, help="default: the template's (6)")
    p.add_argument("--frames", type=int, default=431, help="frames per item (431 = 5 s)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument(
        "--no_reference",
        action="store_true",
        help="do not time the straightforward 4.1 step beside ours",
    )
    p.add_argument(
        "--loss_steps", type=int, default=20, help="steps of the fp32-vs-amp loss trace (0 = none)"
    )
    p.add_argument("--trace_amp", default="bf16", choices=["fp16", "bf16"])
    p.add_argument(
        "--trace_config",
        default="micro",
        choices=["template", "tiny", "micro"],
        help="micro: the tests' tiny generator (16 channels)",
    )
    p.add_argument("--trace_frames", type=int, default=30)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "train_speed.json"))
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--_trace", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        args.amp = args.amp[0]
        args.channels_last = args.channels_last == "yes"
        result = _loss_trace(args) if args._trace else _child(args)
        print("RESULT " + json.dumps(result))
        return 0

    import torch

    amps = args.amp or (["none", "fp16", "bf16"] if args.device == "cuda" else ["none", "bf16"])
    cl = {"no": [False], "yes": [True], "both": [False, True]}[args.channels_last]
    results = []
    for config in args.configs:
        for amp in amps:
            for channels_last in cl if amp != "none" else [False]:
                for speed in {"on": [True], "off": [False], "both": [False, True]}[args.speedups]:
                    extra = ["--config", config, "--amp", amp,
                             "--channels_last", "yes" if channels_last else "no"]  # fmt: skip
                    if args.no_reference:
                        extra.append("--no_reference")
                    if not speed:
                        extra.append("--no_speedups")
                    r = _spawn(args, extra)
                    r.setdefault("config", config)
                    r.setdefault("amp", amp)
                    results.append(r)
    trace = None
    if args.loss_steps > 0:
        trace = _spawn(args, ["--_trace", "--config", args.trace_config, "--amp", "none",
                              "--trace_amp", args.trace_amp, "--loss_steps",
                              str(args.loss_steps), "--frames", str(args.trace_frames)])  # fmt: skip
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
        "loss_trace": trace,
    }
    out = Path(args.out)
    from common.atomic import write_text

    write_text(out, json.dumps(report, indent=2) + "\n")
    print(f"machine: {report['machine']['cpu']} ({os.cpu_count()} CPUs), torch {torch.__version__},"
          f" {args.threads} threads, device {args.device}, load avg {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(
        "ours = training.trainer.train_step (speedups: training.speed, as train.py on the CPU); "
        "4.1 = training.reference_step (fp32, plain), alternated step by step on the same batch"
    )
    hdr = (f"{'config':9} {'amp':5} {'ch-last':7} {'speedups':8} {'batch':>5} {'frames':>6} "
           f"{'ours s/step':>11} "
           f"{'4.1 s/step':>10} {'speedup':>7} {'ours CPU s':>10} {'4.1 CPU s':>9} "
           f"{'max rel loss diff':>17} {'peak RSS MB':>11}")  # fmt: skip
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        if "error" in r:
            print(f"{r['config']:9} {r['amp']:5} failed")
            continue
        ref = r.get("ref_sec_per_step_median")
        diff = "-"
        if r.get("ref_losses"):
            diff = max(abs(a[k] - b[k]) / max(abs(b[k]), 1e-8) for a, b in
                       zip(r["losses"], r["ref_losses"]) for k in b
                       if k.startswith("loss") and b[k] != 0)  # fmt: skip
            diff = f"{diff:.1e}"
        ref_s = f"{ref:.2f}" if ref else "-"
        speed = f"{r['speedup']:.2f}x" if ref else "-"
        ref_cpu = f"{r['ref_cpu_sec_per_step_median']:.2f}" if ref else "-"
        print(f"{r['config']:9} {r['amp']:5} {'yes' if r['channels_last'] else 'no':7} "
              f"{'on' if r.get('speedups') else 'off':8} {r['batch_size']:>5} {r['frames']:>6} {r['sec_per_step_median']:>11.2f} "
              f"{ref_s:>10} {speed:>7} {r['cpu_sec_per_step_median']:>10.2f} {ref_cpu:>9} "
              f"{diff:>17} {r['peak_rss_mb']:>11.0f}")  # fmt: skip
    if trace and "error" not in trace:
        print(
            f"\nloss trace: {trace['steps']} steps of our step from one seed, config "
            f"{trace['config']}, batch {trace['batch_size']} x {trace['frames']} frames: "
            f"max relative difference fp32 vs {trace['amp']}"
        )
        for k, v in trace["max_rel_diff"].items():
            first, last = trace["fp32"][0][k], trace["fp32"][-1][k]
            print(
                f"  {k:13} {v:8.2e}   (fp32 step 1 {first:.4f}, step {trace['steps']} {last:.4f})"
            )
    print(f"written: {out}")
    ok = all("error" not in r for r in results) and (trace is None or "error" not in trace)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
