"""The measured-quality recipe: a multi-speaker set from ../shared/data, trained and evaluated.

Every step is a real run of the top-level scripts, inside ``--workdir``:

1. build ``dataset_raw/<speaker>/`` from ``--data`` (all CC BY 4.0, see each folder's licence):
   vocadito singers S1, S7, S11 (one song each, cut into 2.5 s pieces), LibriSpeech test-other
   speakers 367, 533, 1688, 2033 (10 utterances each). The last piece / utterance of each
   speaker is held out (``heldout/``, never trained on); sms-tools ``singing-female.wav`` is an
   unseen singer used as a source only;
2. resample.py -> preprocess_flist_config.py -> preprocess_hubert_f0.py;
3. train.py in chunks until ``--cpu_minutes`` of training CPU time are spent; after each chunk
   the held-out clips are converted (self- and cross-speaker) and scored by eval.py: F0 corr,
   its spread over the last five evaluations (max − min, :func:`spread`), speaker similarity,
   hop buzz and loud-silent frames against training minutes go to ``curve.jsonl`` /
   ``curve.png`` and the curve so far is printed as a table;
4. at the end, the full table: self-conversion and cross-speaker conversion, plain, with
   ``-cr 0.5`` (k-means, cluster/train_cluster.py), with ``-fr -cr 0.5`` (train_index.py) and
   with ``-eh`` when ``pretrain/nsf_hifigan/model`` is there -> ``table.json`` / ``table.txt``.

    python bench/quality_recipe.py --cpu_minutes 120            # resumes; adds to the budget spent
    python bench/quality_recipe.py --config template --speech_encoder vec768l12
    python bench/quality_recipe.py --final_only                 # only step 4 on the newest model

Resumable: re-running skips finished steps (the scripts resume themselves), training continues
from the newest checkpoint, and the CPU time already spent is kept in ``state.json``. Minutes are
CPU minutes of the training processes (user + system; on a shared machine wall time says little)
and, beside them, wall minutes. Needs eval.py (issue 8): without it the recipe stops with a
one-line message before doing anything.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.recipe_curve import (  # noqa: E402  (after the sys.path line)
    CURVE_METRICS,
    as_number,
    format_curve,
    read_curve,
    with_spread,
)

SR = 44100
PIECE_S = 2.5
VOCADITO = {"vocadito_1.wav": "vocadito_S1", "vocadito_10.wav": "vocadito_S7",
            "vocadito_14.wav": "vocadito_S11"}  # fmt: skip
LIBRISPEECH = ("367", "533", "1688", "2033")
UNSEEN = {"sms-tools/singing-female.wav": "unseen_singing_female"}
# --extra_speakers: every other licensed real recording, training only (the base voice's data):
# PTDB-TUG (ODbL 1.0 / DbCL 1.0) and sms-tools (CC BY 4.0). Each file is one speaker, cut into
# pieces of 2.5 s (or two halves when shorter than 5 s).
EXTRA = {"ptdb-tug/mic_F01_sa1.wav": "ptdb_F01", "ptdb-tug/mic_M01_sa1.wav": "ptdb_M01",
         "sms-tools/speech-female.wav": "sms_speech_female",
         "sms-tools/speech-male.wav": "sms_speech_male", "sms-tools/vignesh.wav": "sms_vignesh",
         "sms-tools/soprano-E4.wav": "sms_soprano"}  # fmt: skip


def run(step: str, args: list[str], cwd: Path, quiet: bool = False) -> float:
    """Run a script; returns its CPU seconds (user + system of the child)."""
    print(f"\n== {step}: {' '.join(args)}", flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.DEVNULL if quiet else None
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, stdout=out)
    if proc.returncode != 0:
        raise SystemExit(f"quality_recipe: step '{step}' failed (exit {proc.returncode})")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"== {step} done in {time.time() - t0:.1f} s ({cpu:.0f} CPU s)", flush=True)
    return cpu


# ------------------------------------------------------------------------------------------------
# 1. the data set
# ------------------------------------------------------------------------------------------------
def build_dataset(data: Path, work: Path, extra: bool = False) -> None:
    """``dataset_raw/<spk>/*.wav`` (training) and ``heldout/<spk>/*.wav`` from ``data``; with
    ``extra`` also the :data:`EXTRA` speakers (training only)."""
    import numpy as np

    from common.atomic import write_text
    from common.audio import load_audio, save_audio

    raw, held = work / "dataset_raw", work / "heldout"
    if (work / "dataset_raw.done").is_file():
        return
    if not data.is_dir():
        raise SystemExit(f"quality_recipe: {data} not found (vocadito/, librispeech/, sms-tools/ "
                         "there; pass --data)")  # fmt: skip
    missing = [p for p in [*(f"vocadito/{f}" for f in VOCADITO), *(f"librispeech/{s}"
               for s in LIBRISPEECH), *UNSEEN, *(EXTRA if extra else ())]
               if not (data / p).exists()]  # fmt: skip
    if missing:
        raise SystemExit(f"quality_recipe: {data}: missing {', '.join(missing)} (--data)")
    for name, spk in VOCADITO.items():
        wav, sr = load_audio(str(data / "vocadito" / name))
        n = int(PIECE_S * sr)
        pieces = [wav[i : i + n] for i in range(0, len(wav) - n // 2, n)]
        pieces = [p for p in pieces if np.abs(p).max() > 1e-3]
        for i, piece in enumerate(pieces):
            folder = held if i == len(pieces) - 1 else raw
            save_audio(str(folder / spk / f"{spk}_{i:02d}.wav"), piece, sr, format="wav")
    for spk in LIBRISPEECH:
        utts = sorted((data / "librispeech" / spk).glob("*.flac"))
        for i, utt in enumerate(utts):
            wav, sr = load_audio(str(utt))
            folder = held if i == len(utts) - 1 else raw
            save_audio(str(folder / f"libri_{spk}" / f"{utt.stem}.wav"), wav, sr, format="wav")
    for rel, spk in UNSEEN.items():
        wav, sr = load_audio(str(data / rel))
        save_audio(str(held / spk / f"{spk}.wav"), wav, sr, format="wav")
    licences = "vocadito, LibriSpeech, sms-tools: CC BY 4.0"
    for rel, spk in EXTRA.items() if extra else ():
        wav, sr = load_audio(str(data / rel))
        n = min(int(PIECE_S * sr), len(wav) // 2)
        for i, start in enumerate(range(0, len(wav) - n // 2, n)):
            save_audio(str(raw / spk / f"{spk}_{i:02d}.wav"), wav[start : start + n], sr,
                       format="wav")  # fmt: skip
        licences = "vocadito, LibriSpeech, sms-tools: CC BY 4.0; PTDB-TUG: ODbL 1.0 / DbCL 1.0"
    write_text(work / "dataset_raw.done", licences + "\n")


def prepare(work: Path, args) -> None:
    from common.atomic import write_text

    build_dataset(Path(args.data), work, extra=args.extra_speakers)
    run("resample", [str(ROOT / "resample.py")], work)
    cfg = work / "configs" / "config.json"
    if not cfg.is_file():
        tiny = args.config in ("tiny", "small")
        flags = ["--speech_encoder", args.speech_encoder] + (["--tiny"] if tiny else [])
        run("config", [str(ROOT / "preprocess_flist_config.py"), *flags], work)
        c = json.loads(cfg.read_text(encoding="utf-8"))
        if args.config == "small":  # the demo voice's small model and CPU schedule
            from bench.train_demo_voice import DEMO_MODEL, DEMO_TRAIN

            c["model"].update(DEMO_MODEL)
            c["train"].update(DEMO_TRAIN)
        c["train"].update(json.loads(args.train_overrides))
        c["model"].update(json.loads(args.model_overrides))
        write_text(cfg, json.dumps(c, indent=2) + "\n")
    run("features", [str(ROOT / "preprocess_hubert_f0.py"), "--f0_predictor", args.f0_predictor,
                     "--num_processes", "1"], work)  # fmt: skip
    if args.base_model:
        place_base_model(work / "logs" / "44k", *map(Path, args.base_model))


BASE_VOICE = ROOT / "pretrain" / "base_voice"


def default_base_model(args) -> list[str] | None:
    """``--base_model``: as given; ``none`` → from scratch; not given → the shipped real-voice base
    (``pretrain/base_voice``) when it fits the run (``--config small`` and the base's speech
    encoder), else from scratch. Says which."""
    if args.base_model == ["none"]:
        return None
    if args.base_model:
        return args.base_model
    g, cfg = BASE_VOICE / "base_voice.pth", BASE_VOICE / "config.json"
    if not (g.is_file() and cfg.is_file()):
        print(f"== no base voice in {BASE_VOICE}: training from scratch")
        return None
    encoder = json.loads(cfg.read_text(encoding="utf-8"))["model"]["speech_encoder"]
    if args.config != "small" or args.speech_encoder != encoder:
        print(f"== the base voice ({encoder}, --config small) does not fit --config {args.config} "
              f"--speech_encoder {args.speech_encoder}: training from scratch")  # fmt: skip
        return None
    print(f"== base model: {g} (the shipped real-voice base; --base_model none: from scratch)")
    return [str(g)]


def place_base_model(logs: Path, g: Path, d: Path | None = None) -> None:
    """Fine-tuning as so-vits-svc users do it: a base model's ``G``/``D`` become ``logs/44k``'s
    ``G_0.pth``/``D_0.pth`` (step 0, no resume state; a speaker embedding of another size is
    re-initialised by train.py). Without ``D`` (a shipped base voice keeps only G: the
    discriminator is 47 M parameters) train.py starts the discriminator fresh. Skipped once
    ``logs/44k`` holds checkpoints."""
    import torch

    from common.atomic import torch_save

    if list(logs.glob("G_*.pth")):
        return
    logs.mkdir(parents=True, exist_ok=True)
    for src, name in ((g, "G_0.pth"), (d, "D_0.pth"))[: 1 if d is None else 2]:
        ckpt = torch.load(src, map_location="cpu", weights_only=True)
        ckpt.pop("train_state", None)
        ckpt["iteration"] = 0
        torch_save(ckpt, logs / name)
        print(f"== base model: {src} -> {logs / name}")


# ------------------------------------------------------------------------------------------------
# 3./4. conversions and eval.py
# ------------------------------------------------------------------------------------------------
def speakers(work: Path) -> list[str]:
    return sorted(json.loads((work / "configs" / "config.json").read_text())["spk"])


def median_f0(work: Path, spk: str) -> float:
    import numpy as np

    from common.features import load_f0

    vals = [f for p in sorted((work / "dataset" / "44k" / spk).glob("*.f0.npy"))
            for f, u in zip(*load_f0(p)) if u > 0]  # fmt: skip
    return float(np.median(vals)) if vals else 0.0


def plan(work: Path, f0_predictor: str) -> list[dict]:
    """Self-conversion of every held-out clip, and each one sung/spoken by the next speaker of
    the other kind (singer <-> speaker, cyclic), transposed by the median-f0 ratio."""
    import numpy as np

    from common.audio import load_audio
    from modules.f0 import get_f0_predictor

    spks = speakers(work)
    singers = [s for s in spks if s.startswith("vocadito")]
    talkers = [s for s in spks if s.startswith("libri")]
    pred = get_f0_predictor(f0_predictor, hop_length=512, sampling_rate=SR, device="cpu")
    medians = {s: median_f0(work, s) for s in spks}
    items = []
    sources = sorted(p for p in (work / "heldout").glob("*/*.wav"))
    for k, clip in enumerate(sources):
        src = clip.parent.name
        f0 = pred.compute_f0(load_audio(str(clip), SR)[0])
        med = float(np.median(f0[f0 > 0])) if np.any(f0 > 0) else 0.0
        others = talkers if src.startswith("vocadito") or src.startswith("unseen") else singers
        pairs = [(others[k % len(others)], "cross")]
        if src in spks:
            pairs.insert(0, (src, "self"))
        for tgt, kind in pairs:
            t = 0
            if kind == "cross" and med > 0 and medians[tgt] > 0:
                t = int(round(12 * math.log2(medians[tgt] / med)))
            items.append({"clip": clip, "src": src, "tgt": tgt, "kind": kind, "transpose": t})
    return items


def convert(work: Path, model: str, items: list[dict], variant: str, f0_predictor: str,
            out_root: Path) -> list:  # fmt: skip
    """Convert ``items`` with inference_main.py into ``out_root/<variant>/results`` (one run per
    target speaker); outputs already there are kept."""
    from inference.cli import output_name

    vdir = out_root / variant
    (vdir / "raw").mkdir(parents=True, exist_ok=True)
    flags = {"plain": [], "kmeans": ["-cr", "0.5", "-cm", str(work / "logs" / "44k" /
                                                              "kmeans_10000.pt")],
             "index": ["-cr", "0.5", "-fr", "-cm", str(work / "logs" / "44k" /
                                                       "feature_and_index.npz")],
             "enhancer": ["-eh"]}[variant]  # fmt: skip
    ratio = 0.5 if variant in ("kmeans", "index") else 0.0
    done = []
    for tgt in sorted({it["tgt"] for it in items}):
        group = [it for it in items if it["tgt"] == tgt]
        names = []
        for it in group:
            name = f"{it['src']}__{it['clip'].name}"
            shutil.copy(it["clip"], vdir / "raw" / name)
            names.append(name)
            it = dict(it, variant=variant)
            out = vdir / "results" / output_name(name, it["transpose"], tgt, ratio, False,
                                                  f0_predictor, "flac")  # fmt: skip
            done.append(dict(it, output=out))
        todo = [(n, it) for n, it in zip(names, done[-len(group) :]) if not it["output"].is_file()]
        if todo:
            run(f"convert to {tgt} ({variant})",
                [str(ROOT / "inference_main.py"), "-m", model, "-c", str(work / "logs" / "44k" /
                 "config.json"), "-n", *[n for n, _ in todo], "-t",
                 *[str(it["transpose"]) for _, it in todo], "-s", tgt, "-f0p", f0_predictor,
                 *flags], vdir, quiet=True)  # fmt: skip
    return done


def evaluate(work: Path, done: list[dict], out: Path, args, full: bool) -> dict:
    """Run eval.py on ``done``; returns its report (eval.json)."""
    from common.atomic import write_text

    manifest = []
    for it in done:
        manifest.append({
            "output": str(it["output"]), "source": str(it["clip"]), "transpose": it["transpose"],
            "target_bank": str(work / "dataset" / "44k" / it["tgt"]),
            "source_bank": str(it["clip"].parent), "lang": "en" if "libri" in it["src"] else "",
        })  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "items.json", json.dumps(manifest, indent=2) + "\n")
    flags = [] if full else ["--no_asr", "--no_dnsmos", "--no_plots"]
    run("eval", [str(args.eval_script), "--manifest", str(out / "items.json"), "--out", str(out),
                 "--f0_predictor", args.f0_predictor, *flags], work)  # fmt: skip
    return json.loads((out / "eval.json").read_text(encoding="utf-8"))


def summarize(done: list[dict], report: dict, keys) -> dict:
    """Mean of each metric per (variant, kind)."""
    import numpy as np

    rows: dict = {}
    for it, res in zip(done, report["files"]):
        rows.setdefault((it["variant"], it["kind"]), []).append(res)
    table = {}
    for (variant, kind), res in sorted(rows.items()):
        table[f"{variant}/{kind}"] = {
            k: float(np.nanmean([r[k] for r in res if r.get(k) is not None] or [np.nan]))
            for k in keys
        }  # fmt: skip
        table[f"{variant}/{kind}"]["n"] = len(res)
    return table


# ------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------
def load_state(work: Path) -> dict:
    p = work / "state.json"
    return json.loads(p.read_text()) if p.is_file() else {"cpu_s": 0.0, "wall_s": 0.0, "step": 0}


def save_state(work: Path, state: dict) -> None:
    from common.atomic import write_text

    write_text(work / "state.json", json.dumps(state, indent=2) + "\n")


def curve_point(work: Path, args, state: dict) -> None:
    from common.checkpoint import latest_checkpoint_path

    model = latest_checkpoint_path(work / "logs" / "44k", "G_*.pth")
    step = state["step"]
    items = plan(work, args.f0_predictor)
    done = convert(work, model, items, "plain", args.f0_predictor,
                   work / "convert" / f"step_{step}")  # fmt: skip
    report = evaluate(work, done, work / "eval" / f"step_{step}", args, full=False)
    table = summarize(done, report, CURVE_METRICS)
    row = {"step": step, "cpu_minutes": round(state["cpu_s"] / 60, 1),
           "wall_minutes": round(state["wall_s"] / 60, 1)}  # fmt: skip
    for kind in ("self", "cross"):
        for key in CURVE_METRICS:
            row[f"{kind}_{key}"] = as_number(table.get(f"plain/{kind}", {}).get(key))
    rows = read_curve(work / "curve.jsonl")
    row = with_spread(rows, row)
    print("curve: " + json.dumps(row), flush=True)
    with open(work / "curve.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    print(format_curve([r for r in rows if r["step"] < step] + [row]), flush=True)
    from bench.train_demo_voice import plot_curve

    plot_curve(work / "curve.jsonl", "cpu_minutes", "training CPU minutes")


TABLE_KEYS = ("f0_corr", "f0_rmse_cents", "vuv_f1", "secs_target", "secs_source", "dnsmos_ovrl",
              "cer", "wer", "loudness_corr", "clicks", "hop_buzz_db", "f0_on_frame_rate",
              "loud_silent")  # fmt: skip


def final_table(work: Path, args, state: dict) -> dict:
    """Every variant (plain, k-means, index, enhancer when present) -> eval.py -> table."""
    from common.atomic import write_text
    from common.checkpoint import latest_checkpoint_path

    logs = work / "logs" / "44k"
    model = latest_checkpoint_path(logs, "G_*.pth")
    if not (logs / "kmeans_10000.pt").is_file():
        run("k-means", [str(ROOT / "cluster" / "train_cluster.py"), "--minibatch"], work)
    if (
        not (logs / "feature_and_index.npz").is_file()
        and not (logs / "feature_and_index.pkl").is_file()
    ):
        run("feature index", [str(ROOT / "train_index.py")], work)
    variants = ["plain", "kmeans", "index"]
    if (ROOT / "pretrain" / "nsf_hifigan" / "model").is_file():
        variants.append("enhancer")
    items = plan(work, args.f0_predictor)
    root = work / "convert" / f"final_step_{state['step']}"
    done = [d for v in variants for d in convert(work, model, items, v, args.f0_predictor, root)]
    report = evaluate(work, done, work / "eval" / f"final_step_{state['step']}", args, full=True)
    table = summarize(done, report, TABLE_KEYS)
    overrides = json.loads(args.model_overrides)
    config = f"{args.config} config" + (f" with model {overrides}" if overrides else "")
    budget = (
        f"{config}, {args.speech_encoder}, step {state['step']}, "
        f"{state['cpu_s'] / 60:.0f} training CPU minutes ({state['wall_s'] / 60:.0f} wall)"
    )
    lines = [f"budget: {budget}", f"{'variant/kind':16s} {'n':>3s} " +
             " ".join(f"{k:>13s}" for k in TABLE_KEYS)]  # fmt: skip
    for name, row in table.items():
        lines.append(f"{name:16s} {row['n']:3d} " + " ".join(f"{row[k]:13.3f}" for k in TABLE_KEYS))
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    write_text(work / "table.txt", text)
    write_text(work / "table.json", json.dumps({"budget": budget, "table": table}, indent=2))
    return table


def train_chunks(work: Path, args, state: dict) -> None:
    """train.py in chunks of about ``--eval_every`` CPU minutes, a curve point after each."""
    budget_s = args.cpu_minutes * 60
    sec_per_step = state.get("cpu_s_per_step", 0.0)
    while state["cpu_s"] < budget_s:
        left = budget_s - state["cpu_s"]
        chunk_s = min(args.eval_every * 60, left)
        n = 20 if sec_per_step <= 0 else max(1, int(chunk_s / sec_per_step))
        target = state["step"] + n
        t0 = time.time()
        cpu = run(f"train to step {target}", [str(ROOT / "train.py"), "-c", "configs/config.json",
                  "-m", "44k", "--max_steps", str(target), "--eval_interval", str(n)], work)  # fmt: skip
        state["cpu_s"] += cpu
        state["wall_s"] += time.time() - t0
        state["cpu_s_per_step"] = sec_per_step = cpu / n
        state["step"] = target
        save_state(work, state)
        curve_point(work, args, state)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--workdir", default=str(ROOT / "bench" / "results" / "quality"))
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data"),
                   help="folder with vocadito/, librispeech/, sms-tools/")  # fmt: skip
    p.add_argument("--config", choices=["small", "tiny", "template"], default="small",
                   help="small: the demo voice's model and CPU schedule (mel-only warm-up, then "
                        "the discriminator; bench/train_demo_voice.py DEMO_MODEL/DEMO_TRAIN); "
                        "tiny / template: preprocess_flist_config.py's (--tiny)")  # fmt: skip
    p.add_argument(
        "--speech_encoder",
        default="whisper-ppg-ct2",
        help="preprocess_flist_config.py -se (default: the encoder the install ships)",
    )
    p.add_argument("--f0_predictor", default="fcpe", help="features, conversion and eval.py")
    p.add_argument("--model_overrides", default="{}",
                   help='JSON merged into the config\'s "model" (first run only), e.g. the demo '
                        'voice\'s small decoder: \'{"upsample_initial_channel": 128}\'')  # fmt: skip
    p.add_argument("--train_overrides", default="{}",
                   help='JSON merged into the config\'s "train" (first run only), e.g. '
                        '\'{"learning_rate": 0.0003, "disc_start_step": 2000}\'')  # fmt: skip
    p.add_argument(
        "--cpu_minutes",
        type=float,
        default=60.0,
        help="total training CPU minutes over all runs (the budget)",
    )
    p.add_argument(
        "--eval_every",
        type=float,
        default=20.0,
        help="training CPU minutes between two curve points",
    )
    p.add_argument("--base_model", nargs="+", metavar="G [D]",
                   help="fine-tune from this G_*.pth (and D_*.pth; same model config; e.g. "
                        "pretrain/demo_voice/demo_voice.pth); 'none': from scratch. Default: the "
                        "shipped real-voice base pretrain/base_voice/base_voice.pth "
                        "(bench/train_base_voice.py) with --config small and its speech encoder, "
                        "else from scratch")  # fmt: skip
    p.add_argument("--extra_speakers", action="store_true",
                   help="also train on PTDB-TUG and the other sms-tools clips, each its own "
                        "speaker (the base voice, bench/train_base_voice.py); held-out clips and "
                        "conversions stay the same")  # fmt: skip
    p.add_argument("--final_only", action="store_true", help="only the final table")
    p.add_argument("--prepare_only", action="store_true",
                   help="only the data set, config and features (e.g. before training elsewhere: "
                        "bench/gpu_recipe.sh)")  # fmt: skip
    p.add_argument("--eval_script", default=str(ROOT / "eval.py"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not Path(args.eval_script).is_file():
        print(f"quality_recipe: {args.eval_script} not found: the recipe scores with eval.py "
              "(issue 8, deliverable 1); merge it first", file=sys.stderr)  # fmt: skip
        return 2
    for flag, value in (("--train_overrides", args.train_overrides),
                        ("--model_overrides", args.model_overrides)):  # fmt: skip
        try:
            json.loads(value)
        except ValueError:
            print(f"quality_recipe: {flag} {value!r} is not JSON", file=sys.stderr)
            return 2
    if args.base_model and len(args.base_model) > 2:
        print("quality_recipe: --base_model takes G and optionally D", file=sys.stderr)
        return 2
    args.base_model = default_base_model(args)
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    prepare(work, args)
    if args.prepare_only:
        return 0
    state = load_state(work)
    if not args.final_only:
        train_chunks(work, args, state)
    if state["step"] == 0:
        print("quality_recipe: no training yet: give --cpu_minutes", file=sys.stderr)
        return 2
    final_table(work, args, state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
