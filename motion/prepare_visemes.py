"""Prepare takes for train_visemes.py: z, targets on the z grid, lag per take, masks, file lists.

    python motion/prepare_visemes.py --takes records -m logs/44k/G_800.pth -c logs/44k/config.json -s alice

For every take folder (``record.py`` / ``import_llf.py`` output) under ``--takes``:

1. audio → 44.1 kHz mono → z = the voice model's posterior-encoder mean ``m_q`` with the
   speaker's embedding (``-s``), ``[C, T]`` at 86.13 fps (:mod:`motion.voice`);
2. bad face frames (NaN, tracking lost, frozen) are masked (:func:`motion.align.bad_frames`);
3. the face-to-audio lag is estimated (mouth opening vs loudness, sub-frame; :mod:`motion.lag`),
   reported, and applied (``--lag auto``; or a fixed ``--lag MS``, or ``--lag none``); an estimate
   whose correlation is below ``--min_lag_corr`` is not trusted and 0 is used (reported);
4. the face values are resampled by time onto the z frame centres; frames without face data
   nearby are masked.

Outputs in ``--out`` (default ``dataset/visemes``), numpy files with documented shapes:
``<take>.z.npy`` float32 [C, T], ``<take>.bs.npy`` float32 [T, 61], ``<take>.mask.npy`` bool [T],
``<take>.loud.npy`` float32 [T] (log-RMS dB on the z grid, for the loudness baseline),
``<take>.json`` (lag, correlation, frame counts). File lists ``filelists/train_visemes.txt`` and
``filelists/val_visemes.txt`` hold one output prefix per line; ``--val`` takes (the last ones in
name order, default 1 when there are at least 2) are held out. ``configs/visemes.json`` is written
when missing (its data section is refreshed otherwise). Re-running skips prepared takes unless the
voice model, speaker or lag setting changed. A bad take is reported and skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.atomic import save_npy, write_text  # noqa: E402
from motion.align import bad_frames, resample_to_grid  # noqa: E402
from motion.lag import estimate_lag, loudness_envelope, mouth_opening  # noqa: E402
from motion.take import TakeError, find_takes, load_take  # noqa: E402
from motion.voice import SR, frame_times  # noqa: E402


def prepare_take(take, encoder, speaker, lag_setting: str = "auto", min_lag_corr: float = 0.2,
                 max_gap: float = 0.05) -> dict:  # fmt: skip
    """Everything for one take: ``{"z", "bs", "mask", "loud", "info"}`` (arrays as documented)."""
    from common.audio import load_audio

    wav, _ = load_audio(take.audio_path, sr=SR)
    z = encoder.z(wav, speaker)
    grid = frame_times(z.shape[1])
    bad, counts = bad_frames(take.values)
    good = ~bad
    env, env_t = loudness_envelope(wav, SR)
    est, r = estimate_lag(take.t[good], mouth_opening(take.values[good]), env, env_t)
    if lag_setting == "auto":
        lag, used = (est, "estimated") if r >= min_lag_corr else (0.0, f"0 (estimate r={r:.2f} "
                                                                         f"< {min_lag_corr})")  # fmt: skip
    elif lag_setting == "none":
        lag, used = 0.0, "none"
    else:
        lag, used = float(lag_setting) / 1000.0, "fixed"
    bs, mask = resample_to_grid(take.t - lag, take.values, good, grid, max_gap)
    loud = np.interp(grid, env_t, env).astype(np.float32)
    info = {"take": str(take.path), "frames": int(len(take.values)), "z_frames": int(z.shape[1]),
            "z_channels": int(z.shape[0]), "bad_frames": counts, "lag_estimate_ms": round(est * 1e3, 2),
            "lag_corr": round(r, 3), "lag_applied_ms": round(lag * 1e3, 2), "lag_mode": used,
            "masked_z_frames": int((~mask).sum()), "voice_model": encoder.model_path,
            "speaker": str(speaker), "lag_setting": lag_setting}  # fmt: skip
    return {"z": z, "bs": bs, "mask": mask, "loud": loud, "info": info}


DEFAULT_MODEL = {"hidden": 96, "n_blocks": 5, "kernel_size": 5, "dropout": 0.1}
DEFAULT_TRAIN = {"learning_rate": 2e-3, "batch_size": 8, "segment_frames": 256, "max_steps": 3000,
                 "log_interval": 50, "eval_interval": 500, "keep_ckpts": 3, "velocity_weight": 1.0,
                 "seed": 1234, "rotations": False, "eye_look": False}  # fmt: skip


def write_config(path: Path, data: dict) -> None:
    """``configs/visemes.json``: data section refreshed, model/train sections kept if present."""
    cfg = {"data": {}, "model": dict(DEFAULT_MODEL), "train": dict(DEFAULT_TRAIN)}
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            cfg["model"].update(old.get("model", {}))
            cfg["train"].update(old.get("train", {}))
        except ValueError:
            pass
    cfg["data"] = data
    write_text(path, json.dumps(cfg, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--takes", default="records", help="folder of take folders")
    p.add_argument("-m", "--model_path", required=True, help="voice model G_*.pth")
    p.add_argument("-c", "--config_path", default="logs/44k/config.json", help="voice config")
    p.add_argument("-s", "--speaker", required=True, help="the speaker of the takes (name or id)")
    p.add_argument("--out", default="dataset/visemes", help="output folder")
    p.add_argument("--filelists", default="filelists", help="folder for the file lists")
    p.add_argument("--config_out", default="configs/visemes.json", help="training config to write")
    p.add_argument("--lag", default="auto", help="auto (estimate per take), none, or a lag in ms")
    p.add_argument("--min_lag_corr", type=float, default=0.2)
    p.add_argument("--val", type=int, default=None, help="held-out takes (default 1 if ≥ 2 takes)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--force", action="store_true", help="recompute prepared takes")
    args = p.parse_args(argv)
    if args.lag not in ("auto", "none"):
        try:
            float(args.lag)
        except ValueError:
            print(f"error: --lag {args.lag!r}: use auto, none or milliseconds", file=sys.stderr)
            return 2
    from tqdm import tqdm

    from motion.voice import PosteriorEncoder

    takes = find_takes(args.takes)
    if not takes:
        print(f"error: {args.takes}: no take folders (take.json) found; record or import takes "
              "first", file=sys.stderr)  # fmt: skip
        return 1
    try:
        enc = PosteriorEncoder(args.model_path, args.config_path, args.device)
        enc.speaker_id(args.speaker)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    done, failed = [], []
    names = {}
    for folder in tqdm(takes, desc="takes"):
        name = "_".join(folder.relative_to(args.takes).parts) or folder.name
        prefix = out / name
        meta = prefix.with_suffix(".json")
        if meta.is_file() and not args.force:
            old = json.loads(meta.read_text(encoding="utf-8"))
            same = (old.get("voice_model"), old.get("speaker"), old.get("lag_setting")) == (
                enc.model_path, str(args.speaker), args.lag)  # fmt: skip
            if same and all(prefix.with_suffix(s).is_file() for s in (".z.npy", ".bs.npy")):
                done.append((name, prefix, old))
                continue
        try:
            res = prepare_take(load_take(folder), enc, args.speaker, args.lag, args.min_lag_corr)
        except (TakeError, ValueError, OSError) as e:
            failed.append(f"{folder}: {e}")
            continue
        if res["mask"].sum() < 16:
            failed.append(f"{folder}: fewer than 16 usable frames after masking; skipped")
            continue
        for suffix, key in ((".z.npy", "z"), (".bs.npy", "bs"), (".mask.npy", "mask"),
                            (".loud.npy", "loud")):  # fmt: skip
            save_npy(Path(f"{prefix}{suffix}"), res[key])
        write_text(meta, json.dumps(res["info"], indent=2) + "\n")
        done.append((name, prefix, res["info"]))
    for line in failed:
        print(f"skipped {line}", file=sys.stderr)
    if not done:
        print("error: no take could be prepared", file=sys.stderr)
        return 1
    print(f"{'take':28s} {'frames':>7s} {'bad':>5s} {'lag ms':>8s} {'r':>6s} {'applied':>8s}")
    for name, _, info in done:
        nbad = sum(info["bad_frames"].values())
        print(f"{name[:28]:28s} {info['frames']:7d} {nbad:5d} {info['lag_estimate_ms']:8.1f} "
              f"{info['lag_corr']:6.2f} {info['lag_applied_ms']:8.1f}")  # fmt: skip
        names[name] = info
    n_val = args.val if args.val is not None else (1 if len(done) >= 2 else 0)
    n_val = min(n_val, len(done) - 1) if len(done) > 1 else 0
    prefixes = [str(pfx) for _, pfx, _ in done]
    train, val = prefixes[: len(prefixes) - n_val], prefixes[len(prefixes) - n_val :]
    fl = Path(args.filelists)
    write_text(fl / "train_visemes.txt", "\n".join(train) + "\n")
    write_text(fl / "val_visemes.txt", "\n".join(val) + ("\n" if val else ""))
    if not val:
        print("warning: no held-out take (need at least 2 takes); validation is skipped",
              file=sys.stderr)  # fmt: skip
    write_config(Path(args.config_out), {
        "training_files": str(fl / "train_visemes.txt"), "validation_files": str(fl / "val_visemes.txt"),
        "z_channels": enc.channels, "sampling_rate": SR, "hop_length": 512,
        "voice_model": enc.model_path, "voice_config": enc.config_path, "speaker": str(args.speaker),
    })  # fmt: skip
    print(f"{len(train)} train / {len(val)} val takes; config {args.config_out}")
    return 1 if failed and not done else 0


if __name__ == "__main__":
    sys.exit(main())
