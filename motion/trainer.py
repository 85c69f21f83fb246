"""Training loop for the visemes model (``train_visemes.py``); fixes motion.md §9.9-13.

Data: the prepared takes of ``data.training_files`` (one ``dataset/visemes/<take>`` prefix a line,
see prepare_visemes.py), loaded into memory. Batches are random crops of ``segment_frames``
frames (shorter takes are zero-padded) with a frame mask (bad/missing face frames and padding
are masked out of the loss).

Loss per channel ``c``, with the training set's target std ``s_c`` (floored at 0.05) and weight
``w_c`` (:func:`motion.channels.default_weights`: jaw and mouth first, rotations and eye-look off
unless ``train.rotations`` / ``train.eye_look``)::

    L = Σ_c w_c·mean_masked(((p−y)/s_c)²) / Σ_c w_c  +  velocity_weight · (same on Δp, Δy)

Checkpoints ``logs/<model>/V_<step>.pth`` (atomic; plain dicts of tensors and numbers, loadable
with ``torch.load(weights_only=True)``): ``{"model", "iteration", "optimizer", "learning_rate",
"visemes": everything inference needs (model config, z channels, channel weights, target std,
the silence z, the loudness baseline, the voice model it was prepared with and the SHA-256 of
its weights: common.fingerprint), "rng"}``. Training resumes from the newest one (a run killed
with kill -9 loses at most ``eval_interval`` steps). Every ``eval_interval`` steps each held-out
take is predicted whole and scored
(:mod:`motion.metrics`); TensorBoard gets the losses, the metrics and an image of predicted vs
true JawOpen/MouthClose/MouthFunnel; ``V_best.pth`` is the checkpoint with the best held-out
JawOpen correlation, ``val_metrics.json`` the latest per-take scores.
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common.atomic import remove_stale_temporaries, torch_save, write_text
from common.divergence import check_loss, check_weights
from common.errors import InputError, UsageError
from motion.channels import JAW_OPEN, NAMES, default_weights
from motion.metrics import evaluate, fit_loudness_baseline, mean_metrics
from motion.model import build
from motion.voice import FPS

logger = logging.getLogger("train_visemes")

DEBUG_SLEEP_ENV = "SOVITS_VISEMES_STEP_SLEEP"  # seconds to sleep per step (lock and kill tests)


@dataclass
class Item:
    name: str
    z: np.ndarray  # float32 [C, T]
    bs: np.ndarray  # float32 [T, 61]
    mask: np.ndarray  # bool [T]
    loud: np.ndarray  # float32 [T]


def load_items(list_path: str | os.PathLike) -> list[Item]:
    path = Path(list_path)
    if not path.is_file():
        raise InputError(f"{path}: file list not found", "run motion/prepare_visemes.py")
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        prefix = line.strip()
        if not prefix:
            continue
        try:
            arrays = [np.load(f"{prefix}{s}", allow_pickle=False)
                      for s in (".z.npy", ".bs.npy", ".mask.npy", ".loud.npy")]  # fmt: skip
        except (OSError, ValueError) as e:
            raise InputError(f"{prefix}: prepared take unreadable ({e})",
                             "run motion/prepare_visemes.py again") from None  # fmt: skip
        z, bs, mask, loud = arrays
        if (
            z.ndim != 2
            or bs.ndim != 2
            or bs.shape[1] != len(NAMES)
            or mask.ndim != 1
            or loud.ndim != 1
        ):
            raise InputError(f"{prefix}: prepared take has the wrong shapes (z {list(z.shape)}, "
                             f"bs {list(bs.shape)}, mask {list(mask.shape)}, loud {list(loud.shape)}; "
                             f"expected [C, T], [T, {len(NAMES)}], [T], [T])",
                             "run motion/prepare_visemes.py again")  # fmt: skip
        if items and z.shape[0] != items[0].z.shape[0]:
            raise InputError(f"{prefix}: prepared with {z.shape[0]} z channels, but "
                             f"{items[0].name} with {items[0].z.shape[0]}; all takes must come "
                             "from one voice model", "run motion/prepare_visemes.py again")  # fmt: skip
        t = min(z.shape[1], len(bs), len(mask), len(loud))
        items.append(Item(Path(prefix).name, z[:, :t].astype(np.float32), bs[:t].astype(np.float32),
                          mask[:t].astype(bool), loud[:t].astype(np.float32)))  # fmt: skip
    return items


def dataset_stats(items: list[Item], train_cfg: dict) -> dict:
    """Normalisation, weights, silence z, rest pose and the loudness baseline from training takes."""
    z = np.concatenate([it.z[:, it.mask] for it in items], 1)
    y = np.concatenate([it.bs[it.mask] for it in items], 0)
    loud = np.concatenate([it.loud[it.mask] for it in items])
    quiet = loud < -35.0
    zs = np.concatenate([it.z for it in items], 1)
    ls = np.concatenate([it.loud for it in items])
    z_sil = zs[:, ls < -35.0].mean(1) if (ls < -35.0).any() else zs.mean(1)
    return {
        "z_mean": z.mean(1).tolist(),
        "z_std": np.maximum(z.std(1), 1e-3).tolist(),
        "y_std": np.maximum(y.std(0), 0.05).tolist(),
        "weights": default_weights(
            bool(train_cfg.get("rotations")), bool(train_cfg.get("eye_look"))
        ),
        "z_silence": z_sil.tolist(),
        "rest": (y[quiet].mean(0) if quiet.any() else y.mean(0)).tolist(),
        "baseline": list(fit_loudness_baseline(loud, y[:, JAW_OPEN])),
    }


def random_batch(items: list[Item], rng: np.random.Generator, batch: int, seg: int):
    """Random crops: ``z [B, C, S]``, ``y [B, 61, S]``, loss mask and padding mask ``[B, 1, S]``."""
    lengths = np.array([len(it.bs) for it in items], float)
    pick = rng.choice(len(items), size=batch, p=lengths / lengths.sum())
    c = items[0].z.shape[0]
    z = np.zeros((batch, c, seg), np.float32)
    y = np.zeros((batch, 61, seg), np.float32)
    m = np.zeros((batch, 1, seg), np.float32)
    pad = np.zeros((batch, 1, seg), np.float32)
    for b, i in enumerate(pick):
        it = items[i]
        t = len(it.bs)
        start = int(rng.integers(0, max(1, t - seg + 1)))
        n = min(seg, t - start)
        z[b, :, :n] = it.z[:, start : start + n]
        y[b, :, :n] = it.bs[start : start + n].T
        m[b, 0, :n] = it.mask[start : start + n]
        pad[b, 0, :n] = 1.0
    return tuple(torch.from_numpy(a) for a in (z, y, m, pad))


def visemes_loss(pred, y, m, w, s, velocity_weight: float) -> tuple[torch.Tensor, dict]:
    """Weighted, per-channel-normalised masked MSE plus the same on frame differences."""
    wn = w / w.sum()

    def term(p, t, mask):
        err = ((p - t) / s) ** 2 * mask  # [B, 61, T]
        per_ch = err.sum((0, 2)) / mask.sum().clamp_min(1)
        return (per_ch * wn).sum()

    pos = term(pred, y, m)
    mv = m[..., 1:] * m[..., :-1]
    vel = term(pred[..., 1:] - pred[..., :-1], y[..., 1:] - y[..., :-1], mv)
    return pos + velocity_weight * vel, {"loss/position": pos.item(), "loss/velocity": vel.item()}


def _step_of(path: str) -> int:
    m = re.search(r"V_(\d+)\.pth$", os.path.basename(path))
    return int(m.group(1)) if m else -1


def latest_checkpoint(model_dir: Path) -> str | None:
    files = [f for f in glob.glob(str(model_dir / "V_*.pth")) if _step_of(f) >= 0]
    return max(files, key=_step_of) if files else None


def plot_curves(pred: np.ndarray, true: np.ndarray, title: str) -> np.ndarray:
    """``[H, W, 3]`` uint8: predicted vs true JawOpen, MouthClose, MouthFunnel over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.plotting import _figure_to_array

    names = ("JawOpen", "MouthClose", "MouthFunnel")
    fig, axes = plt.subplots(len(names), 1, figsize=(12, 6), sharex=True)
    t = np.arange(len(true)) / FPS
    for ax, name in zip(axes, names):
        c = NAMES.index(name)
        ax.plot(t, true[:, c], label="true", lw=1)
        ax.plot(t, pred[:, c], label="predicted", lw=1)
        ax.set_ylabel(name)
        ax.set_ylim(-0.05, 1.05)
    axes[0].legend(loc="upper right")
    axes[0].set_title(title)
    axes[-1].set_xlabel("s")
    fig.tight_layout()
    return _figure_to_array(fig)


@torch.no_grad()
def validate(net, items: list[Item], stats: dict, device) -> tuple[dict, list[dict], list]:
    net.eval()
    per_take, preds = [], []
    for it in items:
        z = torch.from_numpy(it.z)[None].to(device)
        pred = net(z)[0].T.cpu().numpy()
        d = evaluate(pred, it.bs, it.mask, it.loud, tuple(stats["baseline"]))
        d["take"] = it.name
        per_take.append(d)
        preds.append(pred)
    net.train()
    return mean_metrics(per_take), per_take, preds


DIVERGED_HINT = "lower train.learning_rate"


def _voice_sha256(path: str | None) -> str | None:
    """The weights fingerprint of the voice model the z were made with (common.fingerprint), so
    inference can refuse another voice model (motion.predict.VisemesPredictor.check_voice)."""
    if not path or not Path(path).is_file():
        return None
    from common.fingerprint import checkpoint_sha256

    return checkpoint_sha256(path)


def train(config_path: str, model: str, model_dir: str | None = None, max_steps: int | None = None,
          device: str | None = None) -> dict:  # fmt: skip
    """Train (or resume); returns the last validation summary (empty without held-out takes).

    The config is checked first (:func:`common.config_check.load_visemes_config`); one run per
    output folder (a second one stops with :class:`common.locking.FolderBusy`)."""
    from common.config_check import load_visemes_config
    from common.locking import folder_lock

    if max_steps is not None and max_steps < 1:
        raise UsageError(f"--max_steps {max_steps}: must be >= 1")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available here", "use --device cpu")
    cfg = load_visemes_config(config_path)
    out = Path(model_dir or os.path.join("logs", model))
    with folder_lock(out, "train_visemes", wait=False, own_file=True):
        for pattern in (".V_*.tmp", ".val_metrics.json.*.tmp"):  # interrupted atomic writes
            remove_stale_temporaries(out, pattern)
        return _train(cfg, config_path, out, max_steps, device)


def _check_fits(net: torch.nn.Module, state, path: str, config_path: str) -> None:
    """A resumed ``V_<step>.pth`` must have this config's keys and shapes (one-line error)."""
    from common.checkpoint import CheckpointError

    own = net.state_dict()
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a visemes checkpoint (no 'model' entry)")
    missing = [k for k in own if k not in state]
    wrong = [f"{k} {list(state[k].shape)} vs {list(own[k].shape)}" for k in own
             if k in state and tuple(getattr(state[k], "shape", ())) != tuple(own[k].shape)]  # fmt: skip
    extra = [k for k in state if k not in own]
    if missing or wrong or extra:
        what = "; ".join(f"{label}: {', '.join(v[:3])}" for label, v in
                         (("missing", missing), ("other shapes", wrong), ("unexpected", extra)) if v)  # fmt: skip
        raise CheckpointError(
            f"{path}: does not fit {config_path} (model section or takes changed; {what})",
            "train into another folder (-m / --model_dir), or use the config and takes it was "
            "trained with",
        )


def _train(
    cfg: dict, config_path: str, out: Path, max_steps: int | None, device: str | None
) -> dict:
    from torch.utils.tensorboard import SummaryWriter

    from common.checkpoint import CheckpointError, safe_load

    data, mcfg, tcfg = cfg["data"], cfg["model"], cfg["train"]
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    train_items = load_items(data["training_files"])
    val_path = data.get("validation_files")
    val_items = load_items(val_path) if val_path and Path(val_path).is_file() else []
    if not train_items:
        raise InputError(f"{data['training_files']}: no training takes listed",
                         "run motion/prepare_visemes.py")  # fmt: skip
    if not any(it.mask.any() for it in train_items):
        raise InputError(f"{data['training_files']}: no usable face frames in the training takes",
                         "record or import takes where the face is tracked")  # fmt: skip
    channels = train_items[0].z.shape[0]
    for it in val_items:
        if it.z.shape[0] != channels:
            raise InputError(f"{val_path}: take {it.name} has {it.z.shape[0]} z channels, the "
                             f"training takes {channels}; all takes must come from one voice model",
                             "run motion/prepare_visemes.py again")  # fmt: skip
    seed = int(tcfg.get("seed", 1234))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    z_ch = train_items[0].z.shape[0]
    net = build(z_ch, mcfg).to(dev)
    lr0 = float(tcfg.get("learning_rate", 2e-3))
    opt = torch.optim.AdamW(net.parameters(), lr0, betas=(0.8, 0.99), weight_decay=1e-4)
    steps = int(max_steps or tcfg.get("max_steps", 3000))
    step, best = 0, -math.inf
    ckpt_path = latest_checkpoint(out)
    if ckpt_path:
        ck = safe_load(ckpt_path)
        _check_fits(net, ck.get("model") if isinstance(ck, dict) else None, ckpt_path, config_path)
        try:
            net.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            step = int(ck["iteration"])
            stats = ck["visemes"]["stats"]
            best = float(ck["visemes"].get("best", -math.inf))
            torch.set_rng_state(ck["rng"]["torch"])
            rng.bit_generator.state = ck["rng"]["numpy"]
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{ckpt_path}: not a complete visemes checkpoint ({e!r})",
                                  "delete it to resume from the one before") from None  # fmt: skip
        logger.info("resumed from %s (step %d)", ckpt_path, step)
    else:
        stats = dataset_stats(train_items, tcfg)
        net.z_mean.copy_(torch.tensor(stats["z_mean"])[:, None])
        net.z_std.copy_(torch.tensor(stats["z_std"])[:, None])
    w = torch.tensor(stats["weights"], device=dev)[None, :, None]
    s = torch.tensor(stats["y_std"], device=dev)[None, :, None]
    meta = {"z_channels": z_ch, "model": mcfg, "names": list(NAMES), "fps": FPS, "stats": stats,
            "voice_model": data.get("voice_model"), "voice_config": data.get("voice_config"),
            "speaker": data.get("speaker"), "voice_sha256": _voice_sha256(data.get("voice_model"))}  # fmt: skip
    writer = SummaryWriter(str(out))
    batch, seg = int(tcfg.get("batch_size", 8)), int(tcfg.get("segment_frames", 256))
    log_every, eval_every = int(tcfg.get("log_interval", 50)), int(tcfg.get("eval_interval", 500))
    vel_w = float(tcfg.get("velocity_weight", 1.0))
    summary: dict = {}

    def save(path: Path, step: int) -> None:
        check_weights([net], config_path, step, DIVERGED_HINT)  # never a NaN checkpoint
        meta["best"] = best
        torch_save({"model": net.state_dict(), "iteration": step, "optimizer": opt.state_dict(),
                    "learning_rate": lr, "visemes": meta,
                    "rng": {"torch": torch.get_rng_state(), "numpy": rng.bit_generator.state}},
                   path)  # fmt: skip

    from tqdm import tqdm

    net.train()
    t0 = time.time()
    lr = lr0
    bar = tqdm(total=steps, initial=step, desc="visemes", disable=None)
    sleep = float(os.environ.get(DEBUG_SLEEP_ENV, "0") or 0)
    while step < steps:
        lr = lr0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        z, y, m, pad = (x.to(dev) for x in random_batch(train_items, rng, batch, seg))
        loss, parts = visemes_loss(net(z, pad), y, m, w, s, vel_w)
        check_loss(loss.item(), config_path, step + 1, DIVERGED_HINT)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        step += 1
        if sleep:
            time.sleep(sleep)
        bar.update(1)
        if step % log_every == 0 or step == steps:
            writer.add_scalar("loss/total", loss.item(), step)
            for k, v in parts.items():
                writer.add_scalar(k, v, step)
            writer.add_scalar("learning_rate", lr, step)
            logger.info("step %d loss %.4f (%.1f s)", step, loss.item(), time.time() - t0)
        if step % eval_every == 0 or step == steps:
            check_weights([net], config_path, step, DIVERGED_HINT)
            if val_items:
                summary, per_take, preds = validate(net, val_items, stats, dev)
                for k, v in summary.items():
                    writer.add_scalar(f"val/{k}", v, step)
                writer.add_image("val/curves", plot_curves(preds[0], val_items[0].bs, val_items[0].name),
                                 step, dataformats="HWC")  # fmt: skip
                write_text(out / "val_metrics.json",
                           json.dumps({"step": step, "mean": summary, "takes": per_take}, indent=2))  # fmt: skip
                score = summary.get("corr/JawOpen", -math.inf)
                logger.info("step %d val JawOpen corr %.3f (loudness baseline %.3f), lip closures "
                            "%s, residual lag %.1f ms", step, score, summary.get("baseline_corr/JawOpen", float("nan")),
                            summary.get("lip_closure_hit_rate"), summary.get("residual_lag_ms", 0.0))  # fmt: skip
                if score > best:
                    best = score
                    save(out / "V_best.pth", step)
            save(out / f"V_{step}.pth", step)
            keep = int(tcfg.get("keep_ckpts", 3))
            olds = sorted(glob.glob(str(out / "V_*.pth")), key=_step_of)
            olds = [f for f in olds if _step_of(f) >= 0]
            for f in olds[:-keep] if keep > 0 else []:
                os.remove(f)
    bar.close()
    writer.close()
    return summary
