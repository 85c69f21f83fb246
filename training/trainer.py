"""The so-vits-svc 4.1 training loop (sovits-4.1.md §11), for one device or many.

Launch plainly for one device (CUDA if available, else the CPU with a warning), or with
``torchrun`` for several GPUs / machines: when ``WORLD_SIZE`` is set the process group is joined
with ``init_method="env://"`` (NCCL on CUDA, gloo on the CPU), every rank gets its own share of
the data (``DistributedSampler``), and only rank 0 logs, evaluates and writes checkpoints.

Differences from the reference, all deliberate:

- a ``DistributedSampler`` (reshuffled each epoch) instead of every rank reading the whole set;
- gradient clipping that clips when asked (``train.grad_clip_norm`` / ``train.grad_clip_value``,
  both off by default: see :func:`clip_gradients`); the total norm is logged either way;
- checkpoints are written atomically and carry a ``train_state`` entry (step, epoch, position in
  the epoch, scheduler and scaler state) beside the reference keys, so a resume continues exactly
  where the checkpoint was taken; reference checkpoints (e.g. a pretrained ``G_0``/``D_0``)
  resume the reference way;
- the RNG state is restored after evaluation (``infer`` re-seeds the global generator);
- evaluation also logs ``loss/val/mel``: L1 between the log-mels of ``infer``'s output and of the
  ground truth, averaged over the validation files;
- less work for the same losses (``tests/test_train_step_reference.py`` checks them against the
  plain 4.1 step, :mod:`training.reference_step`): the discriminator update runs the real and
  generated audio as one batch, and the generator update's discriminator pass computes no
  gradients for D (4.1 computes them and throws them away) and runs the real half without
  autograd;
- an optional ``train.disc_start_step`` (absent or 0 = the reference: adversarial from step 0):
  before that step the discriminator is neither run nor updated and G learns from the mel, KL
  and lf0 losses alone, which is much cheaper and learns faster at first (the demo voice).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import math
import os
import random
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler

from common.atomic import remove_stale_temporaries, torch_save, write_text
from common.checkpoint import CheckpointError, load_checkpoint, safe_load
from common.divergence import check_loss, check_weights
from common.hparams import HParams, load_config
from training.speed import plain_optimizer_state, speed_up

logger = logging.getLogger("sovits.train")

DEBUG_DIR_ENV = "SOVITS_TRAIN_DEBUG_DIR"  # per-rank sample ids and final weights (tests)


@dataclasses.dataclass
class TrainOptions:
    config: str = "./configs/config.json"
    model: str = "44k"
    model_dir: str | None = None  # default ./logs/<model>
    max_steps: int | None = None  # stop after this many optimizer steps in total
    log_interval: int | None = None
    eval_interval: int | None = None
    num_workers: int | None = None
    device: str | None = None  # "cpu" / "cuda"; default cuda when available
    grad_clip_norm: float | None = None  # override train.grad_clip_norm (0 = off)
    grad_clip_value: float | None = None  # override train.grad_clip_value (0 = off)
    keep_ckpts: int | None = None
    allow_partial: bool = False  # load checkpoints that do not fit the config (experts)


def check_options(opts: TrainOptions) -> None:
    """train.py's flags, before anything is loaded: out of range is one line (exit 2)."""
    import math

    from common.errors import UsageError

    for flag, value, low in (("--max_steps", opts.max_steps, 1), ("--log_interval",
                             opts.log_interval, 1), ("--eval_interval", opts.eval_interval, 1),
                             ("--keep_ckpts", opts.keep_ckpts, 0),
                             ("--num_workers", opts.num_workers, 0)):  # fmt: skip
        if value is not None and value < low:
            raise UsageError(f"{flag} {value}: must be >= {low}"
                             + (" (0 keeps every checkpoint)" if flag == "--keep_ckpts" else ""))  # fmt: skip
    for flag, value in (("--grad_clip_norm", opts.grad_clip_norm),
                        ("--grad_clip_value", opts.grad_clip_value)):  # fmt: skip
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UsageError(f"{flag} {value}: must be a finite number >= 0 (0 = off)")
    if opts.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available here", "use --device cpu")


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------
def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def _step_of(path: str) -> int:
    m = re.search(r"_(\d+)\.pth$", os.path.basename(path))
    return int(m.group(1)) if m else -1


def find_resume_point(model_dir: str) -> tuple[str | None, str | None]:
    """``(G path, D path)`` of the newest step that has both files, else ``(newest G, None)``.

    A crash between writing ``G_n`` and ``D_n`` leaves an unpaired ``G_n``; the pair before it is
    used then. Every file on disk is complete (atomic writes).
    """
    g = {_step_of(p): p for p in glob.glob(os.path.join(model_dir, "G_*.pth")) if _step_of(p) >= 0}
    d = {_step_of(p): p for p in glob.glob(os.path.join(model_dir, "D_*.pth")) if _step_of(p) >= 0}
    both = sorted(set(g) & set(d))
    if both:
        return g[both[-1]], d[both[-1]]
    if g:
        return g[max(g)], None
    return None, None


def clean_checkpoints(model_dir: str, keep: int) -> None:
    """Keep the newest ``keep`` of each of ``G_*``/``D_*`` (by step); ``*_0.pth`` stay; 0 = all."""
    if keep <= 0:
        return
    for prefix in ("G", "D"):
        files = sorted(glob.glob(os.path.join(model_dir, f"{prefix}_*.pth")), key=_step_of)
        files = [f for f in files if _step_of(f) > 0]
        for f in files[:-keep]:
            try:
                os.remove(f)
            except FileNotFoundError:
                pass


def drop_mismatched_optimizer_state(optimizer: torch.optim.Optimizer, label: str) -> None:
    """Forget Adam moments whose shape no longer matches their parameter (re-initialised keys)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            st = optimizer.state.get(p)
            if not st:
                continue
            bad = any(
                isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape != p.shape
                for v in st.values()
            )
            if bad:
                logger.warning(
                    "%s: optimizer state of a parameter of shape %s does not fit; reset",
                    label, tuple(p.shape),
                )  # fmt: skip
                del optimizer.state[p]


def clip_gradients(parameters, clip_norm: float | None, clip_value: float | None) -> float:
    """Clip (when configured) and return the total L2 gradient norm before clipping.

    ``clip_value`` clamps every element to ±value (what the reference's ``clip_grad_value_``
    would do if it were passed a value); ``clip_norm`` rescales so the total norm is at most
    ``clip_norm``. Both off (None or 0) by default: the reference never clipped and its
    hyper-parameters (lr 1e-4, c_mel 45) and all published pretrained models were trained that
    way, AdamW already normalises step sizes, and non-finite fp16 steps are skipped by the
    GradScaler. Turn ``grad_clip_norm`` on (a few times the typical logged ``grad_norm_g``)
    to guard a fragile run against rare spikes.
    """
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return 0.0
    total = float(torch.nn.utils.get_total_norm([p.grad for p in params], 2.0))
    if clip_value:
        torch.nn.utils.clip_grad_value_(params, float(clip_value))
    if clip_norm:
        torch.nn.utils.clip_grad_norm_(params, float(clip_norm), error_if_nonfinite=False)
    return total


class ResumableDistributedSampler(DistributedSampler):
    """``DistributedSampler`` whose next epoch can start after the first ``n`` indices."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._skip = 0

    def skip_next(self, n: int) -> None:
        self._skip = max(0, int(n))

    def __iter__(self):
        indices = list(super().__iter__())
        skip, self._skip = self._skip, 0
        return iter(indices[skip:])

    def __len__(self) -> int:
        return max(0, super().__len__() - self._skip)


def _git_hash(model_dir: str) -> None:
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10)  # fmt: skip
        if out.returncode == 0 and out.stdout.strip():
            write_text(os.path.join(model_dir, "githash"), out.stdout.strip() + "\n")
    except (OSError, subprocess.SubprocessError):
        pass


def setup_logging(model_dir: str | None, rank: int) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    stream = logging.StreamHandler(sys.stdout)
    stream.setFormatter(fmt)
    root.addHandler(stream)
    root.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    if model_dir is not None and rank == 0:
        fh = logging.FileHandler(os.path.join(model_dir, "train.log"), encoding="utf-8")
        fh.setFormatter(fmt)
        root.addHandler(fh)
    for noisy in ("matplotlib", "PIL", "numba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# ----------------------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------------------
def save_train_checkpoint(net, optimizer, scheduler, scaler, hps, epoch: int, global_step: int,
                          batch_in_epoch: int, world_size: int, path: str) -> None:  # fmt: skip
    """Reference layout ``{model, iteration=epoch, optimizer, learning_rate=initial lr}`` plus
    ``train_state`` for an exact resume. Written atomically (temporary file + rename)."""
    state = {
        "model": unwrap(net).state_dict(),
        "iteration": int(epoch),
        "optimizer": plain_optimizer_state(optimizer.state_dict()),
        "learning_rate": float(hps.train.learning_rate),
        "train_state": {
            "global_step": int(global_step),
            "epoch": int(epoch),
            "batch_in_epoch": int(batch_in_epoch),
            "world_size": int(world_size),
            "batch_size": int(hps.train.batch_size),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        },
    }
    torch_save(state, path)
    logger.info("Saving model and optimizer state at epoch %d to %s", epoch, path)


# ----------------------------------------------------------------------------------------------
# one training step (also used by bench/train_speed.py)
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class StepContext:
    hps: HParams
    net_g: torch.nn.Module
    net_d: torch.nn.Module
    optim_g: torch.optim.Optimizer
    optim_d: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    fp16_run: bool
    half_type: torch.dtype
    clip_norm: float | None
    clip_value: float | None
    use_f0_pred: bool
    adversarial: bool = True  # False: mel/KL/lf0 only, the discriminator is skipped

    @classmethod
    def create(cls, hps, net_g, net_d, optim_g, optim_d, device, scaler=None) -> StepContext:
        t = hps.train
        fp16_run = bool(t.get("fp16_run", False))
        half_type = torch.bfloat16 if t.get("half_type", "fp16") == "bf16" else torch.float16
        if scaler is None:  # loss scaling is needed for fp16 only
            scaler = torch.amp.GradScaler(device.type,
                                          enabled=fp16_run and half_type == torch.float16)  # fmt: skip
        return cls(hps, net_g, net_d, optim_g, optim_d, scaler, device, fp16_run, half_type,
                   t.get("grad_clip_norm") or None, t.get("grad_clip_value") or None,
                   bool(unwrap(net_g).use_automatic_f0_prediction))  # fmt: skip

    def autocast(self, enabled: bool = True):
        return torch.autocast(device_type=self.device.type, dtype=self.half_type,
                              enabled=self.fp16_run and enabled)  # fmt: skip


def train_step(ctx: StepContext, c, f0, spec, y, g, lengths, uv, volume=None) -> dict:
    """One reference training step: G forward, D update, G update (§11). Tensors on ctx.device.

    Losses are computed in fp32 outside autocast. Returns the losses (tensors), the grad norms
    (floats) and the tensors the TensorBoard images are made from.
    """
    from modules import commons
    from modules.losses import discriminator_loss, feature_loss, generator_loss, kl_loss
    from modules.mel_processing import mel_spectrogram_torch, spec_to_mel_torch

    hps, t = ctx.hps, ctx.hps.train
    hop = int(hps.data.hop_length)
    segment_frames = int(t.segment_size) // hop
    mel_kw = _mel_args(hps)
    net_g, net_d, optim_g, optim_d, scaler = (
        ctx.net_g,
        ctx.net_d,
        ctx.optim_g,
        ctx.optim_d,
        ctx.scaler,
    )
    mel = spec_to_mel_torch(spec, **mel_kw)
    zero = torch.zeros((), device=y.device)

    with ctx.autocast():
        (y_hat, ids_slice, z_mask, (z, z_p, m_p, logs_p, m_q, logs_q), pred_lf0, norm_lf0,
         lf0) = net_g(c, f0, uv, spec, g=g, c_lengths=lengths, spec_lengths=lengths,
                      vol=volume)  # fmt: skip
        y_mel = commons.slice_segments(mel, ids_slice, segment_frames)
        with ctx.autocast(False):
            y_hat_mel = mel_spectrogram_torch(
                y_hat.squeeze(1).float(), hop_size=hop, win_size=hps.data.win_length,
                center=False, **mel_kw,
            )  # fmt: skip
        y = commons.slice_segments(y, ids_slice * hop, int(t.segment_size))
    loss_disc = loss_disc_all = loss_gen = loss_fm = zero
    grad_norm_d = 0.0
    if ctx.adversarial:  # discriminator
        with ctx.autocast():
            y_d_hat_r, y_d_hat_g, _, _ = net_d(y, y_hat.detach(), batched=True)
            with ctx.autocast(False):
                loss_disc, _, _ = discriminator_loss(y_d_hat_r, y_d_hat_g)
                loss_disc_all = loss_disc
        optim_d.zero_grad()
        scaler.scale(loss_disc_all).backward()
        scaler.unscale_(optim_d)
        grad_norm_d = clip_gradients(net_d.parameters(), ctx.clip_norm, ctx.clip_value)
        scaler.step(optim_d)

    with ctx.autocast():
        if ctx.adversarial:
            y_d_hat_g, fmap_r, fmap_g = _discriminate_for_generator(net_d, y, y_hat)
        with ctx.autocast(False):
            loss_mel = F.l1_loss(y_mel, y_hat_mel) * t.c_mel
            loss_kl = kl_loss(z_p, logs_q, m_p, logs_p, z_mask) * t.c_kl
            if ctx.adversarial:
                loss_fm = feature_loss(fmap_r, fmap_g)
                loss_gen, _ = generator_loss(y_d_hat_g)
            if ctx.use_f0_pred:
                loss_lf0 = F.mse_loss(pred_lf0.float(), lf0.float())
            else:
                loss_lf0 = torch.zeros((), device=y.device)
            loss_gen_all = loss_gen + loss_fm + loss_mel + loss_kl + loss_lf0
    optim_g.zero_grad()
    scaler.scale(loss_gen_all).backward()
    scaler.unscale_(optim_g)
    grad_norm_g = clip_gradients(net_g.parameters(), ctx.clip_norm, ctx.clip_value)
    scaler.step(optim_g)
    scaler.update()
    return {
        "loss_disc": loss_disc, "loss_gen": loss_gen, "loss_fm": loss_fm, "loss_mel": loss_mel,
        "loss_kl": loss_kl, "loss_lf0": loss_lf0, "loss_gen_all": loss_gen_all,
        "loss_disc_all": loss_disc_all, "grad_norm_g": grad_norm_g, "grad_norm_d": grad_norm_d,
        "y_mel": y_mel, "y_hat_mel": y_hat_mel, "mel": mel, "lf0": lf0, "pred_lf0": pred_lf0,
        "norm_lf0": norm_lf0,
    }  # fmt: skip


def _discriminate_for_generator(net_d, y, y_hat):
    """The generator update's discriminator pass: ``(y_d_hat_g, fmap_r, fmap_g)``.

    The same values as ``net_d(y, y_hat)`` (the reference), computed with less work: the
    discriminator's own gradients are not computed (the reference computes them here and
    throws them away: D's gradients are zeroed before its next update), the real half runs
    without autograd (its outputs only enter the loss detached), and a DDP wrapper is bypassed
    (no all-reduce of those unused gradients). Only ``y_hat`` gets a gradient.
    """
    d = unwrap(net_d)
    params = [p for p in d.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        y_d_hat_g, fmap_r, fmap_g = [], [], []
        for disc in d.discriminators:
            with torch.no_grad():
                _, fr = disc(y)
            yg, fg = disc(y_hat)
            y_d_hat_g.append(yg)
            fmap_r.append(fr)
            fmap_g.append(fg)
    finally:
        for p in params:
            p.requires_grad_(True)
    return y_d_hat_g, fmap_r, fmap_g


# ----------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------
class _Dist:
    def __init__(self):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = "WORLD_SIZE" in os.environ and self.world_size > 1

    def barrier(self):
        if self.enabled:
            dist.barrier()


def _pick_device(opts: TrainOptions, d: _Dist) -> torch.device:
    want = (opts.device or "").lower()
    if want not in ("", "cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {opts.device!r}")
    if want == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but CUDA is not available")
    if want != "cpu" and torch.cuda.is_available():
        n = torch.cuda.device_count()
        torch.cuda.set_device(d.local_rank % n)
        return torch.device("cuda", d.local_rank % n)
    return torch.device("cpu")


def _build_loaders(hps, opts, d: _Dist, device):
    from data_utils import TextAudioCollate, TextAudioSpeakerLoader

    all_in_mem = bool(hps.train.get("all_in_mem", False))
    collate = TextAudioCollate()
    train_ds = TextAudioSpeakerLoader(hps.data.training_files, hps, all_in_mem=all_in_mem,
                                      return_ids=True)  # fmt: skip
    if opts.num_workers is not None:
        num_workers = max(0, int(opts.num_workers))
    elif all_in_mem:
        num_workers = 0
    else:
        cpus = os.cpu_count() or 1
        num_workers = 5 if cpus > 4 else cpus
    sampler = ResumableDistributedSampler(
        train_ds, num_replicas=d.world_size, rank=d.rank, shuffle=True,
        seed=int(hps.train.seed), drop_last=False,
    )  # fmt: skip
    train_loader = DataLoader(
        train_ds, batch_size=int(hps.train.batch_size), sampler=sampler, num_workers=num_workers,
        pin_memory=device.type == "cuda", collate_fn=collate, drop_last=False,
        persistent_workers=False,
    )  # fmt: skip
    eval_loader = None
    if d.rank == 0:
        eval_ds = TextAudioSpeakerLoader(hps.data.validation_files, hps, all_in_mem=all_in_mem,
                                         vol_aug=False, crop=False)  # fmt: skip
        eval_loader = DataLoader(eval_ds, batch_size=1, shuffle=False, drop_last=False,
                                 num_workers=min(1, num_workers), collate_fn=collate)  # fmt: skip
    return train_ds, sampler, train_loader, eval_loader


def _mel_args(hps):
    d = hps.data
    return dict(n_fft=d.filter_length, num_mels=d.n_mel_channels, sampling_rate=d.sampling_rate,
                fmin=d.mel_fmin, fmax=d.mel_fmax)  # fmt: skip


def evaluate(hps, net_g, eval_loader, writer_eval, global_step: int, device) -> float:
    """Convert every validation file with ``infer`` (noise 0.35, seed 52468; reference) and log
    audio, mel images and ``loss/val/mel`` (mean L1 of log-mels). Returns that loss."""
    from modules.mel_processing import mel_spectrogram_torch, spec_to_mel_torch
    from training.plotting import plot_spectrogram_to_numpy

    generator = unwrap(net_g)
    generator.eval()
    mel_kw = _mel_args(hps)
    audio_dict, image_dict, losses = {}, {}, []
    devices = [device] if device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        mel = y_hat_mel = None
        for batch_idx, items in enumerate(eval_loader):
            c, f0, spec, y, spk, _lengths, uv, volume = items[:8]
            g = spk[:1].to(device)
            spec, y = spec[:1].to(device), y[:1].to(device)
            c, f0, uv = c[:1].to(device), f0[:1].to(device), uv[:1].to(device)
            if volume is not None:
                volume = volume[:1].to(device)
            mel = spec_to_mel_torch(spec, **mel_kw)
            y_hat, _ = generator.infer(c, f0, uv, g=g, vol=volume)
            y_hat_mel = mel_spectrogram_torch(
                y_hat.squeeze(1).float(), hop_size=hps.data.hop_length,
                win_size=hps.data.win_length, center=False, **mel_kw,
            )  # fmt: skip
            n = min(mel.size(-1), y_hat_mel.size(-1))
            losses.append(F.l1_loss(y_hat_mel[..., :n], mel[..., :n]).item())
            audio_dict[f"gen/audio_{batch_idx}"] = y_hat[0].float().cpu()
            audio_dict[f"gt/audio_{batch_idx}"] = y[0].float().cpu()
    generator.train()
    val_mel = sum(losses) / max(1, len(losses))
    if writer_eval is not None and mel is not None:
        image_dict = {
            "gen/mel": plot_spectrogram_to_numpy(y_hat_mel[0].cpu().numpy()),
            "gt/mel": plot_spectrogram_to_numpy(mel[0].cpu().numpy()),
        }
        for k, v in image_dict.items():
            writer_eval.add_image(k, v, global_step, dataformats="HWC")
        for k, v in audio_dict.items():
            writer_eval.add_audio(k, v.clamp(-1, 1), global_step, hps.data.sampling_rate)
        writer_eval.add_scalar("loss/val/mel", val_mel, global_step)
        writer_eval.flush()
    logger.info("Validation at step %d: mel L1 %.4f over %d file(s)", global_step, val_mel,
                len(losses))  # fmt: skip
    return val_mel


def run(opts: TrainOptions) -> int:
    """Train until ``train.epochs`` (or ``max_steps``). Returns the number of the next step."""
    d = _Dist()
    hps = load_config(opts.config, purpose="train")
    model_dir = opts.model_dir or os.path.join("./logs", opts.model)
    if d.rank == 0:
        os.makedirs(model_dir, exist_ok=True)
    setup_logging(model_dir if d.rank == 0 else None, d.rank)
    device = _pick_device(opts, d)
    if d.enabled:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://",
                                world_size=d.world_size, rank=d.rank)  # fmt: skip
        logger.info("process group: %s, world size %d", backend, d.world_size)
    try:
        if d.rank != 0:
            return _run(opts, hps, model_dir, d, device)
        from common.locking import folder_lock

        with folder_lock(model_dir, "train", wait=False, own_file=True):
            return _run(opts, hps, model_dir, d, device)
    finally:
        if d.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _apply_overrides(hps: HParams, opts: TrainOptions) -> None:
    t = hps.train
    if opts.log_interval is not None:
        t["log_interval"] = int(opts.log_interval)
    if opts.eval_interval is not None:
        t["eval_interval"] = int(opts.eval_interval)
    if opts.keep_ckpts is not None:
        t["keep_ckpts"] = int(opts.keep_ckpts)
    if opts.grad_clip_norm is not None:
        t["grad_clip_norm"] = float(opts.grad_clip_norm)
    if opts.grad_clip_value is not None:
        t["grad_clip_value"] = float(opts.grad_clip_value)


def _run(opts: TrainOptions, hps: HParams, model_dir: str, d: _Dist, device) -> int:
    from models import MultiPeriodDiscriminator, SynthesizerTrn

    _apply_overrides(hps, opts)
    rank = d.rank
    if rank == 0:
        remove_stale_temporaries(model_dir, ".*.pth.*.tmp")
    if device.type == "cpu":
        logger.warning(
            "Training on the CPU (%d threads): this works but is very slow; use a CUDA GPU for "
            "real training.", torch.get_num_threads(),
        )  # fmt: skip

    t = hps.train
    seed = int(t.seed)
    torch.manual_seed(seed)
    random.seed(seed + rank)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    fp16_run = bool(t.get("fp16_run", False))
    half_type = torch.bfloat16 if t.get("half_type", "fp16") == "bf16" else torch.float16
    if fp16_run and device.type == "cpu":
        if half_type == torch.bfloat16:  # 4.1's fp16_run + half_type "bf16": CPU bf16 autocast
            logger.info("fp16_run with half_type bf16 on the CPU: bf16 autocast (fastest on CPUs "
                        "with AVX-512 BF16 / AMX; see bench/train_speed.py)")  # fmt: skip
        else:
            logger.warning("fp16_run with half_type fp16 on the CPU: fp16 autocast on the CPU is "
                           "slow; half_type bf16 is the CPU's reduced precision")  # fmt: skip
    clip_norm, clip_value = t.get("grad_clip_norm") or None, t.get("grad_clip_value") or None
    if clip_norm or clip_value:
        logger.info("gradient clipping: total norm %s, value %s", clip_norm, clip_value)
    segment_frames = int(t.segment_size) // int(hps.data.hop_length)
    log_interval = max(1, int(t.log_interval))
    eval_interval = max(1, int(t.eval_interval))
    keep_ckpts = int(t.get("keep_ckpts", 3))
    disc_start = int(t.get("disc_start_step", 0) or 0)
    if disc_start > 0:
        logger.info("mel/KL/lf0 losses only until step %d, then the discriminator joins",
                    disc_start)  # fmt: skip

    train_ds, sampler, train_loader, eval_loader = _build_loaders(hps, opts, d, device)
    debug_dir = os.environ.get(DEBUG_DIR_ENV)
    if debug_dir:
        os.makedirs(debug_dir, exist_ok=True)

    net_g = SynthesizerTrn(hps.data.filter_length // 2 + 1, segment_frames, **hps.model).to(device)
    net_d = MultiPeriodDiscriminator(bool(hps.model.get("use_spectral_norm", False))).to(device)
    betas = tuple(t.betas)
    optim_g = torch.optim.AdamW(net_g.parameters(), t.learning_rate, betas=betas, eps=t.eps)
    optim_d = torch.optim.AdamW(net_d.parameters(), t.learning_rate, betas=betas, eps=t.eps)

    # ---- resume / fine-tune ------------------------------------------------------------------
    epoch_str, global_step, skip_batches = 1, 0, 0
    train_state = None
    g_path, d_path = find_resume_point(model_dir)
    if g_path is not None:
        fit = dict(config=opts.config, allow_partial=opts.allow_partial)
        _, _, _, it_g = load_checkpoint(g_path, net_g, optim_g, **fit)
        drop_mismatched_optimizer_state(optim_g, g_path)
        if d_path is not None:
            _, _, _, _ = load_checkpoint(d_path, net_d, optim_d, **fit)
            drop_mismatched_optimizer_state(optim_d, d_path)
            epoch_str = max(it_g, 1)
            global_step = _step_of(d_path) + 1
            try:  # G and D are written with the same train_state (their schedulers agree)
                ts = safe_load(g_path).get("train_state")
            except CheckpointError:
                ts = None
            if isinstance(ts, dict):
                train_state = ts
            logger.info("Resuming from %s and %s (epoch %d, next step %d)", g_path, d_path,
                        epoch_str, global_step)  # fmt: skip
        else:
            logger.warning("%s has no matching D_*.pth: the discriminator and the step count "
                           "start fresh", g_path)  # fmt: skip
    if rank == 0:  # written only once the checkpoints are known to fit this config
        cfg_copy = os.path.join(model_dir, "config.json")
        if not (os.path.exists(cfg_copy) and os.path.samefile(cfg_copy, opts.config)):
            with open(opts.config, encoding="utf-8") as f:
                write_text(cfg_copy, f.read())
        _git_hash(model_dir)
    warmup_epochs = int(t.get("warmup_epochs", 0) or 0)

    if train_state is not None:
        ts_g = train_state
        sched_g = torch.optim.lr_scheduler.ExponentialLR(optim_g, gamma=t.lr_decay)
        sched_d = torch.optim.lr_scheduler.ExponentialLR(optim_d, gamma=t.lr_decay)
        sched_g.load_state_dict(ts_g["scheduler"])
        sched_d.load_state_dict(ts_g["scheduler"])
        epoch_str = int(ts_g["epoch"])
        global_step = int(ts_g["global_step"]) + 1
        same_layout = (int(ts_g.get("world_size", -1)) == d.world_size
                       and int(ts_g.get("batch_size", -1)) == int(t.batch_size))  # fmt: skip
        if same_layout:
            skip_batches = int(ts_g.get("batch_in_epoch", 0))
        else:
            logger.warning("world size or batch size changed since the checkpoint: epoch %d "
                           "restarts from its first batch", epoch_str)  # fmt: skip
    else:
        # reference: schedulers built with last_epoch = epoch - 2 (needs initial_lr)
        for opt in (optim_g, optim_d):
            for group in opt.param_groups:
                group.setdefault("initial_lr", group["lr"])
        sched_g = torch.optim.lr_scheduler.ExponentialLR(optim_g, gamma=t.lr_decay,
                                                         last_epoch=epoch_str - 2)  # fmt: skip
        sched_d = torch.optim.lr_scheduler.ExponentialLR(optim_d, gamma=t.lr_decay,
                                                         last_epoch=epoch_str - 2)  # fmt: skip
    scaler = torch.amp.GradScaler(device.type, enabled=fp16_run and half_type == torch.float16)
    if train_state is not None and train_state.get("scaler") and scaler.is_enabled():
        scaler.load_state_dict(train_state["scaler"])
    for what in speed_up(net_g, (optim_g, optim_d), device):  # after loading the optimisers
        logger.info("speed: %s", what)

    torch.manual_seed(seed + rank + global_step)  # fresh per-rank randomness after a resume
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        # weight-norm / depthwise grads can be laid out differently from DDP's buckets: harmless
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")

        ids = [device.index] if device.type == "cuda" else None
        net_g = DDP(net_g, device_ids=ids)
        net_d = DDP(net_d, device_ids=ids)

    writer = writer_eval = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=model_dir)
        writer_eval = SummaryWriter(log_dir=os.path.join(model_dir, "eval"))

    max_steps = opts.max_steps
    sample_log = None
    if debug_dir:
        sample_log = open(os.path.join(debug_dir, f"rank{rank}_samples.txt"), "a", encoding="utf-8")

    ctx = StepContext.create(hps, net_g, net_d, optim_g, optim_d, device, scaler=scaler)
    last_saved = -1
    bad_losses = 0  # consecutive steps with a NaN/inf loss
    last = None  # (epoch, batch_in_epoch) of the last finished step
    step_times: list[float] = []
    stop = max_steps is not None and global_step >= max_steps
    net_g.train()
    net_d.train()
    epoch = epoch_str
    try:
        for epoch in range(epoch_str, int(t.epochs) + 1):
            if stop:
                break
            if warmup_epochs > 0 and epoch <= warmup_epochs:
                for opt in (optim_g, optim_d):
                    for group in opt.param_groups:
                        group["lr"] = t.learning_rate / warmup_epochs * epoch
            sampler.set_epoch(epoch)
            first = 0
            if epoch == epoch_str and skip_batches:
                sampler.skip_next(skip_batches * int(t.batch_size))
                first = skip_batches
            n_batches = first + len(train_loader)
            for batch_idx, items in enumerate(train_loader, start=first):
                t0 = time.perf_counter()
                c, f0, spec, y, spk, lengths, uv, volume, ids = items
                if sample_log is not None:
                    names = [train_ds.audiopaths[i] for i in ids.tolist()]
                    sample_log.write(f"{global_step}\t" + "\t".join(names) + "\n")
                    sample_log.flush()
                nb = device.type == "cuda"
                g = spk.to(device, non_blocking=nb)
                spec, y = spec.to(device, non_blocking=nb), y.to(device, non_blocking=nb)
                c, f0 = c.to(device, non_blocking=nb), f0.to(device, non_blocking=nb)
                uv, lengths = uv.to(device, non_blocking=nb), lengths.to(device, non_blocking=nb)
                if volume is not None:
                    volume = volume.to(device, non_blocking=nb)
                ctx.adversarial = global_step >= disc_start
                out = train_step(ctx, c, f0, spec, y, g, lengths, uv, volume)
                bad_losses = _non_finite_losses(out, bad_losses, scaler, opts.config, global_step,
                                                diverged_hint(hps))  # fmt: skip
                step_times.append(time.perf_counter() - t0)
                last = (epoch, batch_idx + 1)

                if rank == 0:
                    if global_step % log_interval == 0:
                        lr = optim_g.param_groups[0]["lr"]
                        losses = [out[k] for k in ("loss_disc", "loss_gen", "loss_fm", "loss_mel",
                                                   "loss_kl")]  # fmt: skip
                        reference_loss = sum(float(x) for x in losses)
                        logger.info("Train Epoch: %d [%.0f%%]", epoch,
                                    100.0 * batch_idx / max(1, n_batches))  # fmt: skip
                        logger.info(
                            "Losses: %s, step: %d, lr: %g, reference_loss: %.4f, lf0: %.4f, "
                            "grad_norm g/d: %.2f/%.2f, %.3f s/step",
                            [round(float(x), 4) for x in losses], global_step, lr,
                            reference_loss, float(out["loss_lf0"]), out["grad_norm_g"],
                            out["grad_norm_d"],
                            sum(step_times) / len(step_times),
                        )  # fmt: skip
                        step_times.clear()
                        _summarize_train(writer, global_step, lr, out, ctx.use_f0_pred)
                    if global_step % eval_interval == 0:
                        check_weights((unwrap(net_g), unwrap(net_d)), opts.config, global_step,
                                      diverged_hint(hps))  # fmt: skip
                        evaluate(hps, net_g, eval_loader, writer_eval, global_step, device)
                        _save_pair(net_g, net_d, optim_g, optim_d, sched_g, sched_d, scaler, hps,
                                   epoch, global_step, batch_idx + 1, d.world_size, model_dir,
                                   keep_ckpts)  # fmt: skip
                        last_saved = global_step
                global_step += 1
                if max_steps is not None and global_step >= max_steps:
                    stop = True
                    break
            if not stop:
                sched_g.step()
                sched_d.step()
        # final checkpoint of a run that ended between two evaluations
        if rank == 0 and last is not None and last_saved != global_step - 1:
            check_weights((unwrap(net_g), unwrap(net_d)), opts.config, global_step - 1,
                          diverged_hint(hps))  # fmt: skip
            evaluate(hps, net_g, eval_loader, writer_eval, global_step - 1, device)
            _save_pair(net_g, net_d, optim_g, optim_d, sched_g, sched_d, scaler, hps, last[0],
                       global_step - 1, last[1], d.world_size, model_dir, keep_ckpts)  # fmt: skip
        if debug_dir:
            torch_save({"g": unwrap(net_g).state_dict(), "d": unwrap(net_d).state_dict(),
                        "global_step": global_step},
                       os.path.join(debug_dir, f"rank{rank}_final.pt"))  # fmt: skip
        d.barrier()
        # global_step is the next step; the last one done (and saved as G_/D_<step>) is one less
        if global_step > 0:
            logger.info("Training stopped at step %d (epoch %d; last checkpoint G_%d.pth)",
                        global_step - 1, last[0] if last else epoch_str, global_step - 1)  # fmt: skip
        else:
            logger.info("Training stopped before its first step")
    finally:
        if sample_log is not None:
            sample_log.close()
        for w in (writer, writer_eval):
            if w is not None:
                w.close()
    return global_step


def diverged_hint(hps) -> str:
    fp16 = bool(hps.train.get("fp16_run", False))
    return "lower train.learning_rate" + (", or turn train.fp16_run off" if fp16 else "")


# fp16 with a GradScaler: an overflow skips the step (weights unchanged); this many in a row stop
FP16_BAD_STEPS = 5


def _non_finite_losses(out: dict, bad: int, scaler, config: str, step: int, hint: str) -> int:
    """Count consecutive NaN/inf losses; raise :class:`TrainingDiverged` on the first one (on the
    :data:`FP16_BAD_STEPS`-th with a GradScaler, which skips such steps). Returns the new count."""
    values = [float(out["loss_gen_all"]), float(out["loss_disc_all"])]
    if all(math.isfinite(v) for v in values):
        return 0
    bad += 1
    if not scaler.is_enabled() or bad >= FP16_BAD_STEPS:
        check_loss(next(v for v in values if not math.isfinite(v)), config, step, hint)
    return bad


def _save_pair(net_g, net_d, optim_g, optim_d, sched_g, sched_d, scaler, hps, epoch, step,
               batch_in_epoch, world_size, model_dir, keep_ckpts) -> None:  # fmt: skip
    save_train_checkpoint(net_g, optim_g, sched_g, scaler, hps, epoch, step, batch_in_epoch,
                          world_size, os.path.join(model_dir, f"G_{step}.pth"))  # fmt: skip
    save_train_checkpoint(net_d, optim_d, sched_d, scaler, hps, epoch, step, batch_in_epoch,
                          world_size, os.path.join(model_dir, f"D_{step}.pth"))  # fmt: skip
    clean_checkpoints(model_dir, keep_ckpts)


def _summarize_train(writer, step, lr, out: dict, use_f0_pred: bool) -> None:
    from training.plotting import plot_data_to_numpy, plot_spectrogram_to_numpy

    y_mel, y_hat_mel, mel = out["y_mel"], out["y_hat_mel"], out["mel"]
    lf0, pred_lf0, norm_lf0 = out["lf0"], out["pred_lf0"], out["norm_lf0"]
    scalars = {
        "loss/g/total": out["loss_gen_all"], "loss/d/total": out["loss_disc_all"],
        "learning_rate": lr, "grad_norm_d": out["grad_norm_d"], "grad_norm_g": out["grad_norm_g"],
        "loss/g/fm": out["loss_fm"], "loss/g/mel": out["loss_mel"], "loss/g/kl": out["loss_kl"],
        "loss/g/lf0": out["loss_lf0"],
    }  # fmt: skip
    for k, v in scalars.items():
        v = float(v)
        if math.isfinite(v):
            writer.add_scalar(k, v, step)
    images = {
        "slice/mel_org": plot_spectrogram_to_numpy(y_mel[0].detach().float().cpu().numpy()),
        "slice/mel_gen": plot_spectrogram_to_numpy(y_hat_mel[0].detach().float().cpu().numpy()),
        "all/mel": plot_spectrogram_to_numpy(mel[0].detach().float().cpu().numpy()),
    }
    if use_f0_pred:
        lf0_np = lf0[0, 0, :].detach().float().cpu().numpy()
        images["all/lf0"] = plot_data_to_numpy(
            lf0_np, pred_lf0[0, 0, :].detach().float().cpu().numpy()
        )
        images["all/norm_lf0"] = plot_data_to_numpy(
            lf0_np, norm_lf0[0, 0, :].detach().float().cpu().numpy()
        )
    for k, v in images.items():
        writer.add_image(k, v, step, dataformats="HWC")
    writer.flush()


def options_summary(opts: TrainOptions) -> str:
    return json.dumps(dataclasses.asdict(opts))
