"""Train the demo voice shipped in ``pretrain/demo_voice/`` (the recipe that made it).

The demo (demo.py) converts with this voice: the same two synthetic singers (``alto`` = 0,
``bass`` = 1, :data:`common.synthetic.DEMO_SINGERS`), the same speech encoder (whisper-ppg-ct2,
shipped with the install) and the same folder flow, only with more clips and many more steps.
Every step is a real run of the top-level scripts, inside ``--workdir``:

    write the synthetic singers -> resample.py -> preprocess_flist_config.py --tiny
    -> the demo config (below) -> preprocess_hubert_f0.py -f0p fcpe -> train.py

The demo config is ``config_tiny_template.json`` with a small decoder and settings that learn
fast from scratch on a CPU (:data:`DEMO_MODEL`, :data:`DEMO_TRAIN`): it is an ordinary so-vits-svc
4.1 config and the checkpoints have the ordinary layout. Until ``train.disc_start_step`` the
discriminator is skipped (mel + KL + lf0 losses only): a CPU step is several times cheaper.

    python bench/train_demo_voice.py                      # prepare, then train (resumes)
    python bench/train_demo_voice.py --max_steps 3000     # stop at step 3000
    python bench/train_demo_voice.py --export             # newest G_* -> pretrain/demo_voice/

Re-running resumes: finished preparation steps are skipped by the scripts themselves and
train.py resumes from the newest checkpoint pair. Stop it at any time (Ctrl-C): at most
``--eval_interval`` steps are lost. ``--export`` writes the half-precision release file
(compress_model.py -hf) and its config; it refuses a file over 10 MB.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RELEASE_DIR = ROOT / "pretrain" / "demo_voice"
RELEASE_NAME = "demo_voice.pth"
MAX_RELEASE_BYTES = 10 * 1000 * 1000
MODEL_NAME = "demo"

# The demo config: the tiny template (whisper-ppg-ct2 dims filled in by preprocess_flist_config)
# with a smaller text encoder, flow and decoder, so that a CPU step is cheap and the release is
# small (4.0 M parameters without enc_q: about 8 MB in fp16).
DEMO_MODEL = {
    "hidden_channels": 96,
    "inter_channels": 96,
    "filter_channels": 256,
    "gin_channels": 128,
    "n_layers": 4,
    "upsample_initial_channel": 128,
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
}
# Short segments, items cut to 48 frames (0.56 s: the encoders see whole items, so this sets the
# cost of a step) and a higher learning rate with a short warm-up: from scratch, G first learns
# from the mel loss alone (no discriminator: a step costs a third) until disc_start_step, then
# so-vits-svc 4.1's full losses. Without the discriminator the decoder learns a buzz at the frame
# rate (44100 / 512 = 86 Hz) in silences and at voicing edges that the mel loss cannot see
# (eval.py's "buzz dB" and "f0@frame"); the shipped demo voice was trained with disc_start_step
# 20000, i.e. without it.
DEMO_TRAIN = {
    "learning_rate": 0.001,
    "warmup_epochs": 2,
    "batch_size": 4,
    "segment_size": 5120,
    "max_frames": 48,
    "disc_start_step": 800,
    "keep_ckpts": 4,
    "log_interval": 25,
    "eval_interval": 50,
}


def run(step: str, args: list[str], cwd: Path, env: dict | None = None) -> None:
    print(f"\n== {step}: {' '.join(args)}", flush=True)
    t0 = time.time()
    env = dict(os.environ if env is None else env, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"train_demo_voice: step '{step}' failed (exit {proc.returncode})")
    print(f"== {step} done in {time.time() - t0:.1f} s", flush=True)


def demo_config(config: dict) -> dict:
    """``config`` (from preprocess_flist_config.py --tiny) turned into the demo config."""
    config = json.loads(json.dumps(config))
    config["model"].update(DEMO_MODEL)
    config["train"].update(DEMO_TRAIN)
    return config


def prepare(work: Path, files_per_singer: int) -> None:
    """Synthetic singers -> 44.1 kHz dataset -> file lists + demo config -> features."""
    from common.atomic import write_text
    from common.synthetic import DEMO_SINGERS, write_dataset

    raw = work / "dataset_raw"
    if not raw.is_dir():
        print(f"== writing {len(DEMO_SINGERS)} synthetic singers to {raw}")
        write_dataset(raw, DEMO_SINGERS, files_per_singer=files_per_singer, duration=4.0)
    run("resample", [str(ROOT / "resample.py")], work)
    cfg_path = work / "configs" / "config.json"
    if not cfg_path.is_file():
        run("config", [str(ROOT / "preprocess_flist_config.py"), "--speech_encoder",
                       "whisper-ppg-ct2", "--tiny"], work)  # fmt: skip
        cfg = demo_config(json.loads(cfg_path.read_text(encoding="utf-8")))
        write_text(cfg_path, json.dumps(cfg, indent=2) + "\n")
    run("features", [str(ROOT / "preprocess_hubert_f0.py"), "--f0_predictor", "fcpe",
                     "--num_processes", "1"], work)  # fmt: skip


def train(work: Path, max_steps: int) -> None:
    args = [str(ROOT / "train.py"), "-c", "configs/config.json", "-m", MODEL_NAME,
            "--max_steps", str(max_steps), "--num_workers", "0"]  # fmt: skip
    run("train", args, work)


def export(work: Path, out_dir: Path = RELEASE_DIR, model_name: str = MODEL_NAME,
           release_name: str = RELEASE_NAME, g: str | None = None) -> Path:  # fmt: skip
    """Newest ``G_*.pth`` (or ``g``) -> ``out_dir/<release_name>`` (fp16 release) +
    ``config.json`` + ``step.txt``; refused over 10 MB."""
    from common.atomic import write_text
    from common.checkpoint import latest_checkpoint_path
    from compress_model import compress

    model_dir = work / "logs" / model_name
    g = g or latest_checkpoint_path(model_dir, "G_*.pth")
    if g is None:
        raise SystemExit(f"train_demo_voice: no G_*.pth in {model_dir}: train first")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / release_name
    tmp = out_dir / (release_name + ".new")
    compress(str(model_dir / "config.json"), g, True, str(tmp))
    size = tmp.stat().st_size
    if size > MAX_RELEASE_BYTES:
        tmp.unlink()
        raise SystemExit(f"train_demo_voice: {g} gives a {size / 1e6:.1f} MB release (> 10 MB)")
    os.replace(tmp, out)
    shutil.copyfile(model_dir / "config.json", out_dir / "config.json")
    step = int(Path(g).stem.split("_")[1])
    write_text(out_dir / "step.txt", f"{step}\n")
    print(f"wrote {out} ({size / 1e6:.2f} MB, step {step}) and {out_dir / 'config.json'}")
    return out


# ------------------------------------------------------------------------------------------------
# quick scores (F0 corr with fcpe, speaker similarity with resemblyzer); eval.py gives the full set
# ------------------------------------------------------------------------------------------------
# (source singer, target singer, transpose): self- and cross-singer conversions of held-out clips
PAIRS = (("alto", "bass", -12), ("bass", "alto", 12), ("alto", "alto", 0), ("bass", "bass", 0))


def _load_44k(path):
    from common.audio import load_audio

    return load_audio(str(path), 44100)[0]


def f0_corr(output, source, transpose: float, predictor) -> float:
    """Pearson correlation of output f0 vs source f0 × 2^(transpose/12), frames voiced in both."""
    import numpy as np

    out, src = _load_44k(output), _load_44k(source)
    n = min(len(out), len(src)) // predictor.hop_length
    f_out = predictor.compute_f0(out, n)
    f_src = predictor.compute_f0(src, n) * 2 ** (transpose / 12)
    both = (f_out > 0) & (f_src > 0)
    if both.sum() < 3:
        return float("nan")
    return float(np.corrcoef(f_out[both], f_src[both])[0, 1])


class SpeakerScorer:
    """Cosine similarity of resemblyzer embeddings (utterance vs the mean over a bank)."""

    def __init__(self):
        from resemblyzer import VoiceEncoder

        self.encoder = VoiceEncoder("cpu", verbose=False)
        self._banks: dict = {}

    def embed(self, path):
        """16 kHz, peak-normalised, no voice-activity trimming: resemblyzer's own trimming
        drops all of a buzzy or quiet output and then every such file gets the same embedding."""
        import numpy as np

        from common.audio import load_audio

        wav = load_audio(str(path), 16000)[0]
        wav = wav / (np.abs(wav).max() + 1e-9) * 0.9
        return self.encoder.embed_utterance(wav.astype(np.float32))

    def bank(self, paths):
        import numpy as np

        key = tuple(sorted(map(str, paths)))
        if key not in self._banks:
            e = np.mean([self.embed(p) for p in key], axis=0)
            self._banks[key] = e / np.linalg.norm(e)
        return self._banks[key]

    def secs(self, path, bank_paths) -> float:
        import numpy as np

        e = self.embed(path)
        return float(np.dot(e / np.linalg.norm(e), self.bank(bank_paths)))


def quick_scores(items: list[dict], out_dir=None, f0_predictor: str = "fcpe", **_) -> dict:
    """``items`` as for eval.py (output, source, transpose, target_bank, source_bank) ->
    ``{"files": [{f0_corr, secs_target, secs_source}], "aggregate": means}``. Called like
    ``quality.evaluate`` (``out_dir`` and the other options are ignored) until eval.py is in."""
    import numpy as np

    from modules.f0 import get_f0_predictor

    pred = get_f0_predictor(
        f0_predictor if f0_predictor != "auto" else "fcpe",
        hop_length=512,
        sampling_rate=44100,
        device="cpu",
    )
    spk = SpeakerScorer()
    files = []
    for it in items:
        files.append({
            "output": str(it["output"]),
            "f0_corr": f0_corr(it["output"], it["source"], it["transpose"], pred),
            "secs_target": spk.secs(it["output"], it["target_bank"]),
            "secs_source": spk.secs(it["output"], it.get("source_bank") or [it["source"]]),
        })  # fmt: skip
    keys = ("f0_corr", "secs_target", "secs_source")
    agg = {k: float(np.nanmean([f[k] for f in files])) for k in keys}
    return {"files": files, "aggregate": agg}


def picture(source, output, transpose: float, png, f0_predictor: str = "fcpe") -> None:
    """PNG: log-mel spectrograms of source and output, and their f0 curves (source transposed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from modules.f0 import get_f0_predictor
    from modules.mel_processing import mel_spectrogram_torch

    pred = get_f0_predictor(f0_predictor, hop_length=512, sampling_rate=44100, device="cpu")
    src, out = _load_44k(source), _load_44k(output)
    fig, ax = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    for a, wav, title in ((ax[0], src, f"source {Path(source).name}"),
                          (ax[1], out, f"output {Path(output).name}")):  # fmt: skip
        mel = mel_spectrogram_torch(torch.from_numpy(wav)[None])[0].numpy()
        a.imshow(mel, origin="lower", aspect="auto", interpolation="none",
                 extent=(0, mel.shape[1] * 512 / 44100, 0, 80))  # fmt: skip
        a.set(title=title, ylabel="mel bin")
    for wav, label, scale in ((src, f"source x 2^({transpose:g}/12)", 2 ** (transpose / 12)),
                              (out, "output", 1.0)):  # fmt: skip
        f = pred.compute_f0(wav) * scale
        t = np.arange(len(f)) * 512 / 44100
        ax[2].plot(t, np.where(f > 0, f, np.nan), label=label)
    ax[2].set(xlabel="time [s]", ylabel="f0 [Hz] (" + f0_predictor + ")")
    ax[2].legend()
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)


def training_minutes(train_log: Path):
    """``train.log`` -> ``f(step)``: minutes spent in training steps up to ``step`` (the sum of the
    logged seconds per step; evaluation, checkpoint writing and pauses between runs excluded)."""
    import re

    pattern = re.compile(r"step: (\d+), .* ([0-9.]+) s/step")
    points, total, last = [(0, 0.0)], 0.0, 0
    for line in train_log.read_text(encoding="utf-8", errors="replace").splitlines():
        m = pattern.search(line)
        if m:
            step, sec = int(m.group(1)), float(m.group(2))
            total += max(0, step - last) * sec / 60
            last = step
            points.append((step, total))

    def at(step: int) -> float:
        return max((t for s, t in points if s <= step), default=0.0)

    return at


def score_checkpoints(work: Path) -> list[dict]:
    """Convert the held-out clips (:data:`PAIRS`) with every not yet scored ``G_*.pth`` and
    append F0 corr / speaker similarity per step to ``work/curve.jsonl``; plot ``curve.png``."""
    import glob

    from common.audio import save_audio
    from inference.infer_tool import Svc

    model_dir = work / "logs" / MODEL_NAME
    curve_path = work / "curve.jsonl"
    done = set()
    if curve_path.is_file():
        done = {json.loads(ln)["step"] for ln in curve_path.read_text().splitlines() if ln.strip()}
    step_minutes = training_minutes(model_dir / "train.log")
    val = [ln.strip() for ln in (work / "filelists" / "val.txt").read_text().splitlines()]
    clips = {s: sorted(work / v for v in val if f"/{s}/" in v)[:1] for s in ("alto", "bass")}
    banks = {s: sorted((work / "dataset" / "44k" / s).glob("*.wav"))[-6:] for s in clips}
    # train.py keeps the newest few: copies kept in work/snap/ (same mtime) are scored too
    found = {int(Path(p).stem[2:]): p for d in (work / "snap", model_dir)
             for p in glob.glob(str(d / "G_*.pth"))}  # fmt: skip
    ckpts = [found[k] for k in sorted(found)]
    out_dir = work / "scores"
    out_dir.mkdir(exist_ok=True)
    rows = []
    for g in ckpts:
        step = int(Path(g).stem[2:])
        if step in done:
            continue
        minutes = step_minutes(step)
        svc = Svc(g, str(model_dir / "config.json"), "cpu", "", False, "", "", False, False)
        items = []
        for src, tgt, t in PAIRS:
            for clip in clips[src]:
                out = out_dir / f"{clip.stem}_to_{tgt}_{t}key_G{step}.wav"
                audio = svc.slice_inference(str(clip), tgt, t, -40, 0, False, 0.4,
                                            f0_predictor="fcpe")  # fmt: skip
                save_audio(str(out), audio, 44100, format="wav")
                items.append({"output": out, "source": clip, "transpose": t,
                              "target_bank": banks[tgt], "source_bank": banks[src],
                              "kind": "self" if src == tgt else "cross"})  # fmt: skip
        scores = quick_scores(items)
        row = {"step": step, "minutes": round(minutes, 1)}
        for kind in ("self", "cross"):
            sel = [f for f, it in zip(scores["files"], items) if it["kind"] == kind]
            for k in ("f0_corr", "secs_target", "secs_source"):
                row[f"{kind}_{k}"] = round(sum(f[k] for f in sel) / len(sel), 4)
        print(json.dumps(row), flush=True)
        with open(curve_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        rows.append(row)
    plot_curve(curve_path)
    return rows


def plot_curve(curve_path: Path, x_key: str = "minutes",
               x_label: str = "training minutes (sum of step times)") -> None:  # fmt: skip
    """``curve.jsonl`` (rows with step, ``x_key``, self/cross F0 corr and SECS) -> ``curve.png``;
    rows with ``self_f0_corr_spread5`` / ``cross_f0_corr_spread5`` (bench/quality_recipe.py) add
    a third panel: the F0 corr spread over the last five evaluations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted((json.loads(ln) for ln in curve_path.read_text().splitlines() if ln.strip()),
                  key=lambda r: r["step"])  # fmt: skip
    if not rows:
        return
    spread = any("self_f0_corr_spread5" in r for r in rows)
    fig, ax = plt.subplots(1, 3 if spread else 2, figsize=(15 if spread else 10, 3.5))
    x = [r[x_key] for r in rows]
    ax[0].plot(x, [r["cross_f0_corr"] for r in rows], "o-", label="cross-singer")
    ax[0].plot(x, [r["self_f0_corr"] for r in rows], "s-", label="self")
    ax[0].set(xlabel=x_label, ylabel="F0 corr")
    ax[1].plot(x, [r["cross_secs_target"] for r in rows], "o-", label="cross: to target")
    ax[1].plot(x, [r["cross_secs_source"] for r in rows], "x--", label="cross: to source")
    ax[1].set(xlabel=x_label, ylabel="speaker similarity (SECS)")
    if spread:
        for kind, style in (("cross", "o-"), ("self", "s-")):
            y = [r.get(f"{kind}_f0_corr_spread5") for r in rows]
            ax[2].plot(x, [math.nan if v is None else v for v in y], style, label=kind)
        ax[2].set(xlabel=x_label, ylabel="F0 corr spread, last 5 (max − min)")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend()
    fig.tight_layout()
    fig.savefig(curve_path.with_suffix(".png"), dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--workdir", default=str(ROOT / "bench" / "results" / "demo_voice"))
    p.add_argument("--files_per_singer", type=int, default=24)
    p.add_argument("--max_steps", type=int, default=100000)
    p.add_argument("--export", action="store_true", help="only export the newest checkpoint")
    p.add_argument("--out_dir", default=str(RELEASE_DIR), help="where --export writes")
    p.add_argument(
        "--score",
        action="store_true",
        help="only score the checkpoints not yet scored (curve.jsonl, curve.png)",
    )
    args = p.parse_args(argv)
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.export:
        export(work, Path(args.out_dir))
        return 0
    if args.score:
        score_checkpoints(work)
        return 0
    prepare(work, args.files_per_singer)
    train(work, args.max_steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
