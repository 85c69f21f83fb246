"""Conversion speed on this CPU, by stage, with the template config (vec768l12, 44.1 kHz).

    .venv/bin/python bench/infer_speed.py [--threads 2] [--long 180] [--f0p pm] [--memory] [--out FILE]

What it does (all in a temporary work folder; files in ``pretrain/`` are used when present,
otherwise random-init stand-ins of the same size and format are written — speed does not depend
on the weights' values):

1. throughput references measured in the same run: fp32 / bf16 matmul (2048²) and the decoder's
   most expensive convolution (Conv1d 128→128, k 11, dilation 5, 55104 samples);
2. the synthesizer (``net_g.infer``) on 10 s of input (861 frames, as §19): FLOPs counted with
   ``torch.utils.flop_counter`` (per top-level module), median time of 3 runs after a warm-up,
   real-time factor and achieved GFLOP/s, for each path:
   - ``reference``: weight norm kept, ``no_grad`` (the straightforward path, as Svc in 4.1);
   - ``fp32``: our default (weight norm folded, ``inference_mode``), max |Δ| to ``reference``;
   - ``bf16``: ``--precision bf16`` (CPU autocast), SNR against fp32;
   each path's time is also divided by the ``reference`` path's time in the same run (the
   same-machine comparison: the honest figure) and by so-vits-svc 4.1's own synthesizer time as
   measured in sovits-4.1.md §19 / ``timing_infer_cpu.json`` (median 5.69 s, runs 4.31–8.70 s,
   on a 2-core AMD EPYC — a different machine, so that ratio only places the figures);
   GFLOP/s are shown as a share of the fp32 / bf16 matmul peak measured in step 1;
3. the speech encoder alone on the 10 s input (units ``[1, 768, T]``): time and units' SNR of
   bf16 against fp32;
4. the whole conversion (load + ``Svc.slice_inference`` + writing FLAC, ``-eh``) of a 10 s clip
   and a 3-minute song (synthetic singing with pauses), fp32 and bf16, by stage: load, f0
   (``--f0p``, default pm as the CLI), encoder, synthesizer, enhancer (NSF-HiFiGAN), assembly,
   writing; end-to-end RTF, "stages around the synthesizer add X %" (everything but the
   synthesizer, load included, over the synthesizer), and the bf16 output's SNR against fp32;
5. with ``--memory``: peak RSS of ``inference_main.py`` (a fresh process) on 10 s and 10 min.

Results: a table on stdout and JSON in ``bench/results/infer_speed_<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
import torch.nn.functional as F  # noqa: E402

SR = 44100


def reference_timing() -> dict | None:
    """so-vits-svc 4.1's own ``net_g.infer`` timing (sovits-4.1.md §19), or None when absent."""
    for base in (ROOT.parent / "shared", ROOT.parent.parent / "shared", ROOT / "shared"):
        path = base / "reference" / "timing_infer_cpu.json"
        if path.is_file():
            d = json.loads(path.read_text())
            return {"source": "sovits-4.1.md §19 / timing_infer_cpu.json",
                    "machine": "2-core AMD EPYC (not this machine), torch " + str(d.get("torch")),
                    "frames": d["frames"], "median_s": d["median_s"],
                    "min_s": min(d["times_s"]), "max_s": max(d["times_s"])}  # fmt: skip
    print("infer_speed: ../shared/reference/timing_infer_cpu.json not found: no so-vits-svc 4.1 "
          "timing to compare with", file=sys.stderr)  # fmt: skip
    return None


def snr_db(ref, x) -> float:
    ref = torch.as_tensor(ref, dtype=torch.float64)
    x = torch.as_tensor(x, dtype=torch.float64)
    err = ((ref - x) ** 2).sum().clamp_min(1e-30)
    return float(10 * torch.log10((ref**2).sum() / err))


def cpu_info() -> dict:
    info = {
        "machine": platform.machine(),
        "cpu": platform.processor(),
        "logical_cpus": os.cpu_count(),
    }
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        flags = next(line for line in text.splitlines() if line.startswith("flags")).split()
        info["flags"] = sorted(
            f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "fma")
        )
    except (OSError, StopIteration):
        pass
    try:
        info["loadavg_at_start"] = os.getloadavg()
    except OSError:
        pass
    return info


def best_time(fn, n=5) -> float:
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def throughput() -> dict:
    out = {}
    with torch.inference_mode():
        for dt in (torch.float32, torch.bfloat16):
            a = torch.randn(2048, 2048, dtype=dt)
            b = torch.randn(2048, 2048, dtype=dt)
            t = best_time(lambda: torch.mm(a, b))  # noqa: B023
            out[f"matmul_{str(dt).split('.')[-1]}_gflops"] = 2 * 2048**3 / t / 1e9
            conv = torch.nn.Conv1d(128, 128, 11, dilation=5, padding=25).to(dt)
            x = torch.randn(1, 128, 55104, dtype=dt)
            flops = 2 * 128 * 128 * 11 * 55104
            t = best_time(lambda: conv(x))  # noqa: B023
            out[f"conv_{str(dt).split('.')[-1]}_gflops"] = flops / t / 1e9
            # the same convolution as NHWC conv2d (the layout modules.fast_conv uses)
            x4 = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
            w4 = conv.weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
            t = best_time(lambda: F.conv2d(x4, w4, conv.bias, 1, (0, 25), (1, 5)))  # noqa: B023
            out[f"conv_nhwc_{str(dt).split('.')[-1]}_gflops"] = flops / t / 1e9
    return out


# -------------------------------------------------------------------------------------- setup
def make_work(work: Path, n_speakers: int = 2) -> dict:
    """Config, random-init G (4.1 layout), encoder and vocoder files under ``work``."""
    from common.checkpoint import save_checkpoint
    from models import SynthesizerTrn

    cfg = json.loads((ROOT / "configs_template" / "config_template.json").read_text())
    cfg["spk"] = {f"spk{i}": i for i in range(n_speakers)}
    cfg["model"]["n_speakers"] = n_speakers
    (work / "logs" / "44k").mkdir(parents=True, exist_ok=True)
    (work / "logs" / "44k" / "config.json").write_text(json.dumps(cfg, indent=2))
    torch.manual_seed(0)
    net = SynthesizerTrn(1025, cfg["train"]["segment_size"] // 512, **cfg["model"])
    save_checkpoint(net, None, 1e-4, 0, work / "logs" / "44k" / "G_0.pth")
    pre = work / "pretrain"
    pre.mkdir(exist_ok=True)
    real = ROOT / "pretrain"
    sources = {}
    if (real / "checkpoint_best_legacy_500.pt").is_file():
        os.symlink(real / "checkpoint_best_legacy_500.pt", pre / "checkpoint_best_legacy_500.pt")
        sources["encoder"] = "pretrain/checkpoint_best_legacy_500.pt"
    else:
        from tests.vencoder_checkpoints import reference_json, write_fairseq_hubert

        ref = reference_json("checkpoint_best_legacy_500.json")
        write_fairseq_hubert(pre / "checkpoint_best_legacy_500.pt", ref, {}, [str(i) for i in range(500)],
                             optimizer_state=False)  # fmt: skip
        sources["encoder"] = "random-init ContentVec (full size, real format)"
    if (real / "nsf_hifigan" / "model").is_file():
        os.symlink(real / "nsf_hifigan", pre / "nsf_hifigan")
        sources["vocoder"] = "pretrain/nsf_hifigan"
    else:
        from vdecoder import NsfHifiGanGenerator, save_nsf_hifigan

        h = {"resblock": "1", "upsample_rates": [8, 8, 2, 2, 2], "upsample_kernel_sizes": [16, 16, 4, 4, 4],
             "upsample_initial_channel": 512, "resblock_kernel_sizes": [3, 7, 11],
             "resblock_dilation_sizes": [[1, 3, 5]] * 3, "num_mels": 128, "n_fft": 2048, "hop_size": 512,
             "win_size": 2048, "sampling_rate": 44100, "fmin": 40, "fmax": 16000}  # fmt: skip
        save_nsf_hifigan(NsfHifiGanGenerator.from_openvpi(h), h, pre / "nsf_hifigan")
        sources["vocoder"] = "random-init NSF-HiFiGAN (full size, openvpi format)"
    return {"config": cfg, "sources": sources}


def song(seconds: float, seed: int = 0) -> np.ndarray:
    """Synthetic singing with a 0.8 s pause every ~12 s (phrases), so slicing has work to do."""
    from common.synthetic import DEMO_SINGERS, sing

    parts, total, i = [], 0.0, 0
    while total < seconds - 1e-6:
        d = min(11.0 + (i % 3), seconds - total)
        wav, _ = sing(d, DEMO_SINGERS[i % 2], seed=seed + i, silence=False)
        parts.append(np.asarray(wav, np.float32))
        total += d
        if total < seconds - 0.8:
            parts.append(np.zeros(int(0.8 * SR), np.float32))
            total += 0.8
        i += 1
    return np.concatenate(parts)[: int(seconds * SR)]


def load_svc(work: Path, enhance: bool = False, precision: str = "fp32"):
    from inference.infer_tool import Svc

    return Svc(work / "logs/44k/G_0.pth", work / "logs/44k/config.json", "cpu", "", enhance,
               precision=precision, pretrain_dir=work / "pretrain")  # fmt: skip


# -------------------------------------------------------------------------------------- synth
def synth_bench(svc, runs: int = 3) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from common.checkpoint import load_checkpoint
    from models import SynthesizerTrn

    hps = svc.hps_ms
    T = int(10 * SR / 512)  # 861, as §19
    g = torch.Generator().manual_seed(0)
    c = torch.randn(1, hps.model.ssl_dim, T, generator=g)
    f0 = torch.full((1, T), 220.0)
    uv = torch.ones(1, T)
    sid = torch.LongTensor([[0]])

    ref_net = SynthesizerTrn(1025, hps.train.segment_size // 512, **hps.model.to_dict())
    load_checkpoint(svc.net_g_path, ref_net)
    ref_net.eval()

    def run_ref():
        with torch.no_grad():
            return ref_net.infer(c, f0, uv, g=sid, noice_scale=0.4)[0]

    def run_fast(precision):
        def fn():
            with (
                torch.inference_mode(),
                torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"),
            ):
                return svc.net_g_ms.infer(c, f0, uv, g=sid, noice_scale=0.4)[0].float()

        return fn

    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        svc.net_g_ms.infer(c, f0, uv, g=sid, noice_scale=0.4)
    counts = fc.get_flop_counts()
    total = fc.get_total_flops()
    per_module = {k: sum(v.values()) for k, v in counts.items() if k != "Global" and "." not in k}

    result = {"frames": T, "seconds": T * 512 / SR, "gflop": total / 1e9,
              "gflop_per_module": {k: v / 1e9 for k, v in sorted(per_module.items())}, "paths": {}}  # fmt: skip
    outputs = {}
    for name, fn in (
        ("reference", run_ref),
        ("fp32", run_fast("fp32")),
        ("bf16", run_fast("bf16")),
    ):
        outputs[name] = fn()  # warm-up (and the output to compare)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        med = statistics.median(times)
        result["paths"][name] = {"times_s": times, "median_s": med, "rtf": med / result["seconds"],
                                 "gflops": total / med / 1e9}  # fmt: skip
    ref, fp32, bf16 = outputs["reference"], outputs["fp32"], outputs["bf16"]
    result["paths"]["fp32"]["max_abs_diff_vs_reference"] = float((fp32 - ref).abs().max())
    result["paths"]["bf16"]["snr_db_vs_fp32"] = snr_db(fp32, bf16)
    ref_s = result["paths"]["reference"]["median_s"]
    sovits = reference_timing()
    result["sovits41"] = sovits
    for r in result["paths"].values():
        r["ratio_vs_reference_path"] = r["median_s"] / ref_s
        if sovits is not None and sovits["frames"] == T:
            r["ratio_vs_sovits41_other_machine"] = r["median_s"] / sovits["median_s"]
    return result


def encoder_bench(work: Path, runs: int = 3) -> dict:
    """The vec768l12 encoder on the 10 s input: fp32 and bf16 time, units' SNR of bf16."""
    import vencoder
    from common.audio import resample

    wav = torch.from_numpy(resample(song(10.0, seed=1), SR, 16000))
    out = {}
    for precision in ("fp32", "bf16"):
        enc = vencoder.get_speech_encoder("vec768l12", device="cpu", pretrain_dir=work / "pretrain")
        enc.set_precision(precision)
        units = enc.encoder(wav)  # warm-up
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            enc.encoder(wav)
            times.append(time.perf_counter() - t)
        out[precision] = {"median_s": statistics.median(times), "times_s": times, "units": units}
    res = {p: {k: v for k, v in r.items() if k != "units"} for p, r in out.items()}
    res["units_snr_db_bf16_vs_fp32"] = snr_db(out["fp32"]["units"], out["bf16"]["units"])
    res["frames"] = int(out["fp32"]["units"].shape[-1])
    return res


# -------------------------------------------------------------------------------------- pipeline
def pipeline_bench(work: Path, seconds: float, precision: str = "fp32", f0p: str = "pm") -> dict:
    from common.audio import save_audio

    wav = song(seconds, seed=1)
    import soundfile as sf

    path = work / "raw" / f"in_{int(seconds)}s.wav"
    path.parent.mkdir(exist_ok=True)
    sf.write(path, wav, SR, subtype="PCM_16")
    t = time.perf_counter()
    svc = load_svc(work, enhance=True, precision=precision)
    load = time.perf_counter() - t
    svc.timings.clear()
    t0 = time.perf_counter()
    audio = svc.slice_inference(str(path), "spk0", 0, -40, 0, False, 0.4, f0_predictor=f0p)
    t = time.perf_counter()
    save_audio(work / "results" / "out.flac", audio, SR)
    write = time.perf_counter() - t
    total = time.perf_counter() - t0
    st = dict(svc.timings)
    stages = {"load": load, "read": st.get("read", 0), "f0": st.get("f0", 0), "encoder": st.get("encoder", 0),
              "synthesizer": st.get("synthesizer", 0), "enhancer": st.get("enhancer", 0),
              "assemble": st.get("assemble", 0), "writing": write}  # fmt: skip
    end_to_end = load + total
    synth = stages["synthesizer"]
    return {"seconds": seconds, "precision": precision, "f0_predictor": f0p, "stages_s": stages,
            "convert_s": total, "end_to_end_s": end_to_end, "rtf_convert": total / seconds,
            "rtf_end_to_end": end_to_end / seconds, "rtf_synthesizer": synth / seconds,
            "around_synthesizer_pct": 100 * (end_to_end - synth) / synth,
            "around_synthesizer_pct_without_enhancer": 100 * (end_to_end - synth - stages["enhancer"]) / synth,
            "audio": audio}  # fmt: skip


def memory_bench(work: Path, seconds: float, threads: int, precision: str = "fp32") -> dict:
    import soundfile as sf

    name = f"mem_{int(seconds)}s.wav"
    (work / "raw").mkdir(exist_ok=True)
    sf.write(work / "raw" / name, song(seconds, seed=2), SR, subtype="PCM_16")
    code = (
        "import resource, runpy, sys; sys.argv = ['inference_main.py'] + sys.argv[1:]; "
        f"import torch; torch.set_num_threads({threads}); "
        "rc = 0\ntry:\n runpy.run_path(%r, run_name='__main__')\nexcept SystemExit as e:\n rc = e.code or 0\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from this (large) parent
        "print('MAXRSS_KB', next(int(ln.split()[1]) for ln in open('/proc/self/status') "
        "if ln.startswith('VmHWM:')))\nsys.exit(rc)"
    ) % str(ROOT / "inference_main.py")
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, "-m", "logs/44k/G_0.pth", "-c", "logs/44k/config.json",
                           "-n", name, "-s", "spk0", "-wf", "flac", "--precision", precision], cwd=work, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))  # fmt: skip
    took = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    kb = int(
        next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("MAXRSS_KB"))
    )
    return {"seconds": seconds, "precision": precision, "peak_rss_mb": kb / 1024, "wall_s": took}


def print_synth(s: dict, peak: dict) -> None:
    print(f"synthesizer, 10 s input ({s['frames']} frames): {s['gflop']:.1f} GFLOP ("
          + ", ".join(f"{k} {v:.1f}" for k, v in s["gflop_per_module"].items()) + ")")  # fmt: skip
    sv = s.get("sovits41")
    if sv:
        print(f"  so-vits-svc 4.1 itself ({sv['source']}; {sv['machine']}): median {sv['median_s']:.2f} s "
              f"(runs {sv['min_s']:.2f}–{sv['max_s']:.2f} s), RTF {sv['median_s'] / s['seconds']:.3f}")  # fmt: skip
    peaks = {"fp32": peak["matmul_float32_gflops"], "bf16": peak["matmul_bfloat16_gflops"]}
    print(
        "  path       median s   RTF    GFLOP/s  % of matmul peak (fp32 / bf16)  ×reference path"
        "  ×4.1 (other machine)  accuracy"
    )
    for name, r in s["paths"].items():
        acc = "".join(
            f"{k} {v:.3g}" for k, v in r.items() if k.endswith(("diff_vs_reference", "vs_fp32"))
        )
        pct = f"{100 * r['gflops'] / peaks['fp32']:5.1f} / {100 * r['gflops'] / peaks['bf16']:5.1f}"
        other = r.get("ratio_vs_sovits41_other_machine")
        other = f"{other:.2f}" if other is not None else "n/a"
        print(f"  {name:9s} {r['median_s']:8.2f}  {r['rtf']:.3f}  {r['gflops']:7.1f}  {pct:>30s}  "
              f"{r['ratio_vs_reference_path']:15.2f}  {other:>20s}  {acc}", flush=True)  # fmt: skip


def print_pipeline(rows: list[dict]) -> None:
    keys = list(rows[0]["stages_s"])
    print("whole conversion with -eh (seconds per stage; end to end = load + conversion + writing)")
    print("  input  prec  " + " ".join(f"{k[:8]:>8s}" for k in keys)
          + "   e2e s  RTF e2e  around synth  (w/o enhancer)  SNR vs fp32")  # fmt: skip
    for r in rows:
        snr = r.get("output_snr_db_vs_fp32")
        print(f"  {r['seconds']:4.0f} s  {r['precision']}  "
              + " ".join(f"{v:8.2f}" for v in r["stages_s"].values())
              + f"  {r['end_to_end_s']:6.2f}  {r['rtf_end_to_end']:7.3f}  {r['around_synthesizer_pct']:+11.0f} %"
              f"  {r['around_synthesizer_pct_without_enhancer']:+13.0f} %"
              + (f"  {snr:9.1f} dB" if snr is not None else ""), flush=True)  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--long", type=float, default=180.0, help="length of the long input (s)")
    p.add_argument("--no-long", action="store_true")
    p.add_argument("--memory", action="store_true", help="also peak RSS for 10 s and 10 min")
    p.add_argument("--memory-seconds", type=float, nargs="+", default=[10.0, 600.0])
    p.add_argument("--memory-precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--memory-only", action="store_true", help="skip the speed measurements")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--f0p", default="pm", help="f0 predictor of the whole-conversion runs")
    p.add_argument("--out", type=str, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    res = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "torch": torch.__version__, "threads": args.threads,
           "python": platform.python_version(), "machine": cpu_info()}  # fmt: skip
    print(
        f"torch {torch.__version__}, {args.threads} threads, {res['machine'].get('cpu')}, "
        f"load average {res['machine'].get('loadavg_at_start')}",
        flush=True,
    )
    res["throughput"] = throughput()
    print(
        "throughput (GFLOP/s): "
        + ", ".join(f"{k[:-7]} {v:.1f}" for k, v in res["throughput"].items()),
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="infer_speed_") as tmp:
        work = Path(tmp)
        setup = make_work(work)
        res["sources"] = setup["sources"]
        if not args.memory_only:
            svc = load_svc(work)
            res["synthesizer_10s"] = synth_bench(svc, args.runs)
            print_synth(res["synthesizer_10s"], res["throughput"])
            del svc
            res["encoder_10s"] = e = encoder_bench(work, args.runs)
            print(f"encoder vec768l12, 10 s ({e['frames']} frames): fp32 {e['fp32']['median_s']:.2f} s, "
                  f"bf16 {e['bf16']['median_s']:.2f} s; units' SNR bf16 vs fp32 "
                  f"{e['units_snr_db_bf16_vs_fp32']:.1f} dB", flush=True)  # fmt: skip
            res["pipeline"] = []
            lengths = [10.0] + ([] if args.no_long else [args.long])
            for seconds in lengths:
                audio = {}
                for precision in ("fp32", "bf16"):
                    r = pipeline_bench(work, seconds, precision, args.f0p)
                    audio[precision] = r.pop("audio")
                    res["pipeline"].append(r)
                r["output_snr_db_vs_fp32"] = snr_db(audio["fp32"], audio["bf16"])
            print_pipeline(res["pipeline"])
        if args.memory or args.memory_only:
            res["memory"] = [memory_bench(work, s, args.threads, args.memory_precision)
                             for s in args.memory_seconds]  # fmt: skip
            for r in res["memory"]:
                print(
                    f"peak RSS {r['seconds']:.0f} s input: {r['peak_rss_mb']:.0f} MB (wall {r['wall_s']:.0f} s)"
                )
    try:
        res["machine"]["loadavg_at_end"] = os.getloadavg()
    except OSError:
        pass
    out = (
        Path(args.out)
        if args.out
        else ROOT / "bench" / "results" / f"infer_speed_{time.strftime('%Y%m%d_%H%M%S')}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
