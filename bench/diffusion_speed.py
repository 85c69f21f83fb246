"""Shallow-diffusion speed on this CPU (fp32), next to the synthesizer's own cost.

    nice -n 19 .venv/bin/python bench/diffusion_speed.py [--threads 2] [--seconds 10] [--bf16]

Everything is full size (template configs, random-init stand-ins of the real files when
``pretrain/`` lacks them; speed does not depend on the weights' values):

1. the synthesizer (``net_g.infer``, fp32 default path) on ``--seconds`` of input;
2. ``Unit2Mel`` shallow diffusion at k_step 100, speedup 10, with each sampler (ddim, pndm,
   dpm-solver, dpm-solver++, unipc), and the NSF-HiFiGAN vocoder on the same frames;
   with ``--bf16`` also dpm-solver++ under CPU autocast bf16;
3. the whole conversion (``Svc.slice_inference``) of the same clip, plain and with ``-shd``
   (dpm-solver++, the config default), by stage.

Reports seconds per second of audio and the share that shallow diffusion (diffusion + vocoder)
adds to a plain fp32 conversion; the goal is at most +50%. Prints a table and writes JSON to
``bench/results/diffusion_speed_<time>.json``. On a shared machine the figures are noisy: the
load average at start is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
import yaml  # noqa: E402
from infer_speed import SR, cpu_info, make_work, song  # noqa: E402

METHODS = ("ddim", "pndm", "dpm-solver", "dpm-solver++", "unipc")


def write_diffusion(work: Path, ssl_dim: int, n_spk: int) -> None:
    from common.hparams import HParams
    from diffusion import build_unit2mel

    cfg = yaml.safe_load((ROOT / "configs_template" / "diffusion_template.yaml").read_text())
    cfg["model"]["n_spk"] = n_spk
    cfg["data"]["encoder_out_channels"] = ssl_dim
    cfg["vocoder"]["ckpt"] = str(work / "pretrain" / "nsf_hifigan" / "model")
    cfg["spk"] = {f"spk{i}": i for i in range(n_spk)}
    folder = work / "logs" / "44k" / "diffusion"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    torch.manual_seed(0)
    net = build_unit2mel(HParams(**cfg))
    torch.save({"global_step": 0, "model": net.state_dict()}, folder / "model_0.pt")


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--runs", type=int, default=1, help="timed runs per item (after one warm-up)")
    p.add_argument("--bf16", action="store_true", help="also dpm-solver++ under autocast bf16")
    p.add_argument("--out", type=str, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    res = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "torch": torch.__version__, "threads": args.threads,
           "python": platform.python_version(), "machine": cpu_info(), "k_step": 100, "speedup": 10}  # fmt: skip
    print(f"torch {torch.__version__}, {args.threads} threads, {res['machine'].get('cpu')}, "
          f"load average at start {res['machine'].get('loadavg_at_start')}", flush=True)  # fmt: skip
    secs = args.seconds
    out = Path(args.out) if args.out else (
        ROOT / "bench" / "results" / f"diffusion_speed_{time.strftime('%Y%m%d_%H%M%S')}.json")  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)

    def save():  # after every item, so a run cut short still leaves its figures
        out.write_text(json.dumps(res, indent=2))

    with tempfile.TemporaryDirectory(prefix="diffusion_speed_") as tmp:
        work = Path(tmp)
        setup = make_work(work)
        write_diffusion(work, setup["config"]["model"]["ssl_dim"], 2)
        res["sources"] = setup["sources"]
        from inference.infer_tool import Svc

        svc = Svc(work / "logs/44k/G_0.pth", work / "logs/44k/config.json", "cpu", "",
                  diffusion_model_path=work / "logs/44k/diffusion/model_0.pt",
                  diffusion_config_path=work / "logs/44k/diffusion/config.yaml", shallow_diffusion=True,
                  pretrain_dir=work / "pretrain")  # fmt: skip
        T = int(secs * SR / 512)
        g = torch.Generator().manual_seed(0)
        c = torch.randn(1, svc.hps_ms.model.ssl_dim, T, generator=g)
        f0 = torch.full((1, T), 220.0)
        uv = torch.ones(1, T)
        sid = torch.LongTensor([[0]])
        with torch.inference_mode():
            audio = svc.net_g_ms.infer(c, f0, uv, g=sid, noice_scale=0.4)[0][0, 0]
            synth = timed(lambda: svc.net_g_ms.infer(c, f0, uv, g=sid, noice_scale=0.4), args.runs)
            gt = svc.vocoder.extract(audio[None], SR)
            vol = svc.volume_extractor.extract(audio[None])
            units, f0d, vold = c.transpose(1, 2), f0[:, :, None], vol[:, :T, None]
            rows = {"synthesizer": statistics.median(synth)}
            res["seconds_of_audio"] = secs
            res["seconds"] = rows
            print(f"synthesizer (fp32): {rows['synthesizer'] / secs:.3f} s per s", flush=True)

            def diff(method, bf16=False):
                with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                    return svc.diffusion_model(units, f0d, vold, sid, gt_spec=gt, infer_speedup=10,
                                               method=method, k_step=100)  # fmt: skip

            mel = diff("ddim")  # warm-up
            for m in METHODS:
                rows[f"diffusion {m}"] = statistics.median(timed(lambda m=m: diff(m), args.runs))
                print(f"diffusion {m}: {rows[f'diffusion {m}'] / secs:.3f} s per s", flush=True)
                save()
            if args.bf16:
                diff("dpm-solver++", True)
                rows["diffusion dpm-solver++ bf16"] = statistics.median(
                    timed(lambda: diff("dpm-solver++", True), args.runs)
                )
                ref, got = diff("dpm-solver++").float(), diff("dpm-solver++", True).float()
                res["bf16_mel_max_abs_diff"] = float((ref - got).abs().max())
            svc.vocoder.infer(mel, f0d)
            rows["vocoder"] = statistics.median(
                timed(lambda: svc.vocoder.infer(mel, f0d), args.runs)
            )
        res["per_second_of_audio"] = {k: v / secs for k, v in rows.items()}
        print(f"vocoder: {res['per_second_of_audio']['vocoder']:.3f} s per s", flush=True)
        save()

        # whole conversions of the same synthetic clip
        import soundfile as sf

        path = work / "in.wav"
        sf.write(path, song(secs, seed=1), SR, subtype="PCM_16")
        pipes = {}
        for name, shd in (("plain", False), ("shallow diffusion", True)):
            svc.shallow_diffusion = shd
            svc.timings.clear()  # (every model is warm from the measurements above)
            t = time.perf_counter()
            svc.slice_inference(str(path), "spk0", 0, -40, 0, False, 0.4, f0_predictor="pm")
            total = time.perf_counter() - t
            pipes[name] = {"total_s": total, "rtf": total / secs,
                           "stages_rtf": {k: v / secs for k, v in svc.timings.items()}}  # fmt: skip
            res["conversion"] = pipes
            print(f"conversion {name}: RTF {total / secs:.3f}", flush=True)
            save()
        res["conversion"] = pipes
    plain, shd = pipes["plain"]["total_s"], pipes["shallow diffusion"]["total_s"]
    res["shallow_diffusion_adds"] = (shd - plain) / plain
    print(f"\n{'item (fp32 unless noted)':34s} {'s per s of audio':>16s}")
    for k, v in res["per_second_of_audio"].items():
        print(f"{k:34s} {v:16.3f}")
    for name, pr in pipes.items():
        stages = ", ".join(f"{k} {v:.3f}" for k, v in pr["stages_rtf"].items())
        print(f"conversion {name:23s} {pr['rtf']:16.3f}   ({stages})")
    print(f"shallow diffusion adds {100 * res['shallow_diffusion_adds']:.0f}% to a fp32 conversion "
          f"(goal: at most 50%)")  # fmt: skip
    try:
        res["machine"]["loadavg_at_end"] = os.getloadavg()
    except OSError:
        pass
    save()
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
