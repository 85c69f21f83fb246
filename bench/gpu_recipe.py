"""The quality recipe on a lent GPU, in one device call of under 10 minutes.

so-vits-svc 4.1's template config with its full losses (discriminator from step 0) and bf16 AMP
is trained for a fixed wall time on the GPU; the conversions and eval.py's table are made here on
the CPU, into the same table as ``bench/quality_recipe.py``::

    python bench/gpu_recipe.py prepare      # here: data set + features -> .gpu/ (< 64 MiB), wheels -> .whl/
    # one call of the device tool, carry [".gpu", ".whl"], timeout_s 600:
    #     python3 bench/gpu_recipe.py train --minutes 7
    # copy the device's $OUT/G_*.pth, state.json back into .gpu/work/logs/44k, .gpu/work/, then:
    python bench/gpu_recipe.py table        # here: conversions + eval.py -> .gpu/work/table.txt

``prepare`` runs the recipe's data set, config and features steps here (the speech encoder and the
f0 predictor never run on the device) and packs what training reads into ``.gpu/bundle``: wavs
as FLAC and units in fp16 (the linear spectrograms are left out: train.py recomputes them), so
that it travels within the device tool's 64 MiB. ``train`` (on the device, whose Python has torch
with CUDA but not the audio packages) installs the wheels from ``.whl`` into ``/tmp/site``,
unpacks the bundle, trains with ``train.py --device cuda`` until ``--minutes`` pass (SIGINT, as
Ctrl-C: the checkpoint every ``eval_interval`` = 200 steps is kept), and copies the newest G, the
train log and ``state.json`` (GPU wall seconds as the budget) to ``$OUT``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GPU = ROOT / ".gpu"
WORK = GPU / "work"
BUNDLE = GPU / "bundle"
WHEELS = ROOT / ".whl"
TRAIN = {"fp16_run": True, "half_type": "bf16", "disc_start_step": 0, "batch_size": 16,
         "eval_interval": 200, "log_interval": 50, "keep_ckpts": 3}  # fmt: skip
WHEEL_SPECS = ["soundfile==0.14.0", "cffi", "pycparser", "soxr==1.1.0", "librosa==0.11.0",
               "audioread", "decorator", "pooch", "platformdirs"]  # fmt: skip


def _exclude(*paths: str) -> None:
    exclude = ROOT / ".git" / "info" / "exclude"
    lines = exclude.read_text().splitlines() if exclude.is_file() else []
    with open(exclude, "a") as f:
        for p in paths:
            if p not in lines:
                f.write(p + "\n")


def prepare(args) -> None:
    import soundfile as sf
    import torch

    _exclude("/.gpu/", "/.whl/")
    train = dict(TRAIN, batch_size=args.batch_size)
    cmd = [sys.executable, str(ROOT / "bench" / "quality_recipe.py"), "--workdir", str(WORK),
           "--config", "template", "--speech_encoder", args.speech_encoder,
           "--train_overrides", json.dumps(train), "--prepare_only"]  # fmt: skip
    if args.data:
        cmd += ["--data", args.data]
    subprocess.run(cmd, check=True)
    shutil.rmtree(BUNDLE, ignore_errors=True)
    for rel in ("configs/config.json", "filelists/train.txt", "filelists/val.txt"):
        (BUNDLE / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(WORK / rel, BUNDLE / rel)
    for wav in sorted((WORK / "dataset" / "44k").glob("*/*.wav")):
        dst = BUNDLE / wav.relative_to(WORK)
        dst.parent.mkdir(parents=True, exist_ok=True)
        data, sr = sf.read(wav, dtype="int16")
        sf.write(dst.with_suffix(".flac"), data, sr, subtype="PCM_16")
        for f0 in wav.parent.glob(wav.name + ".*.npy"):
            shutil.copy(f0, dst.parent / f0.name)
        units = torch.load(wav.parent / (wav.name + ".soft.pt"), weights_only=True)
        torch.save(units.half(), dst.parent / (wav.name + ".soft16.pt"))
    WHEELS.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                    "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                    "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
                    "--platform", "manylinux2014_x86_64", "-d", str(WHEELS), *WHEEL_SPECS],
                   check=True)  # fmt: skip
    size = sum(p.stat().st_size for d in (BUNDLE, WHEELS) for p in d.rglob("*") if p.is_file())
    print(f"gpu_recipe: {BUNDLE} + {WHEELS}: {size / 2**20:.1f} MiB to carry (limit 64 MiB)")
    if size > 64 * 2**20:
        raise SystemExit("gpu_recipe: the bundle is over the device tool's 64 MiB")


def unpack(dest: Path) -> None:
    import soundfile as sf
    import torch

    for p in sorted(BUNDLE.rglob("*")):
        if p.is_dir():
            continue
        rel = p.relative_to(BUNDLE)
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if p.suffix == ".flac":
            data, sr = sf.read(p, dtype="int16")
            sf.write(out.with_suffix(".wav"), data, sr, subtype="PCM_16")
        elif p.name.endswith(".soft16.pt"):
            units = torch.load(p, weights_only=True).float()
            torch.save(units, out.parent / p.name.replace(".soft16.pt", ".soft.pt"))
        else:
            shutil.copy(p, out)


def train(args) -> None:
    site = Path("/tmp/site")
    wheels = sorted(str(w) for w in WHEELS.glob("*.whl"))
    if wheels and sys.version_info[:2] == (3, 12):  # the device's Python (the wheels' version)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                        "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site),
                        *wheels], check=True)  # fmt: skip
        sys.path.insert(0, str(site))
    work = Path(args.workdir)
    unpack(work)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]),
               PYTHONUNBUFFERED="1")  # fmt: skip
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), "-c", "configs/config.json",
                             "-m", "44k", "--device", args.device], cwd=work, env=env)  # fmt: skip
    try:
        proc.wait(timeout=args.minutes * 60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: train.py stops cleanly
        proc.wait(timeout=120)
    wall = time.time() - t0
    logs = work / "logs" / "44k"
    steps = sorted(int(re.findall(r"\d+", p.stem)[0]) for p in logs.glob("G_*.pth"))
    if not steps:
        raise SystemExit(f"gpu_recipe: no checkpoint after {wall:.0f} s (see train.log)")
    state = {"cpu_s": wall, "wall_s": wall, "step": steps[-1],
             "device": f"{args.device}: minutes are the training process's wall minutes"}  # fmt: skip
    (work / "state.json").write_text(json.dumps(state, indent=2) + "\n")
    print(f"gpu_recipe: trained to step {steps[-1]} in {wall:.0f} s")
    out = os.environ.get("OUT")
    if out:
        for p in (logs / f"G_{steps[-1]}.pth", logs / "train.log", work / "state.json"):
            shutil.copy(p, out)


def table(args) -> None:
    cmd = [sys.executable, str(ROOT / "bench" / "quality_recipe.py"), "--workdir", str(WORK),
           "--config", "template", "--speech_encoder", args.speech_encoder, "--final_only"]  # fmt: skip
    if args.data:
        cmd += ["--data", args.data]
    subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("step", choices=["prepare", "train", "table"])
    p.add_argument("--speech_encoder", default="whisper-base-ct2")
    p.add_argument("--data", help="folder with vocadito/, librispeech/, sms-tools/ "
                                  "(default: ../shared/data)")  # fmt: skip
    p.add_argument("--batch_size", type=int, default=TRAIN["batch_size"])
    p.add_argument("--minutes", type=float, default=7.0, help="train: wall minutes of training")
    p.add_argument("--device", default="cuda", help="train: cuda (cpu only to try the script)")
    p.add_argument("--workdir", default=str(WORK), help="train: where the bundle is unpacked")
    args = p.parse_args(argv)
    {"prepare": prepare, "train": train, "table": table}[args.step](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
