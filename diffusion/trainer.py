"""The diffusion training loop (``train_diff.py``; sovits-4.1.md §13 "Training").

As 4.1: AdamW (lr ``train.lr``, ``weight_decay``), StepLR stepped every iteration with
``last_epoch = step − 2`` (so ``lr = lr·gamma^max((step−2)//decay_step, 0)`` after a restart),
autocast in ``train.amp_dtype`` (fp16 with a GradScaler), a NaN loss is an error,
``train/loss`` and ``train/lr`` every ``interval_log`` steps to TensorBoard (``expdir/logs``) and
``expdir/log_info.txt``; every ``interval_val`` steps ``model_<step>.pt`` = ``{global_step,
model[, optimizer if save_opt]}`` and a validation pass (``validation/loss``, mel images,
ground-truth and predicted audio through the NSF-HiFiGAN vocoder when its files exist). The
previous validation checkpoint is deleted unless its step is a multiple of
``interval_force_save``. Training resumes from the newest ``model_<step>.pt`` under ``expdir``
(a pretrained ``model_0.pt`` there is fine-tuned from; keys whose shape differs, e.g.
``spk_embed`` for another speaker count, are re-initialised with a warning).

Differences, all deliberate: checkpoints are written atomically and carry a small
``train_state`` (epoch, position in the epoch, scaler) beside the reference keys, so a resume
continues with the same batches; with ``save_opt: true`` the resume is exact (without it the
AdamW moments restart, as in 4.1). The noise and crops come from generators seeded by the step
and the epoch. A run stopped by ``--max_steps`` saves its last step. Under ``torchrun`` every
rank gets its own share of the data (``DistributedSampler``); rank 0 logs, validates and saves.
CPU training works (slowly).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler

from common.atomic import torch_save, write_text
from common.divergence import check_loss, check_weights
from common.errors import UsageError
from diffusion.data import DiffusionDataset, collate
from diffusion.unit2mel import build_unit2mel, load_config, load_state
from training.trainer import ResumableDistributedSampler, _Dist, setup_logging, unwrap

logger = logging.getLogger("sovits.train_diff")

DEBUG_SLEEP_ENV = "SOVITS_DIFF_STEP_SLEEP"  # seconds to sleep per step (kill tests)


@dataclasses.dataclass
class DiffTrainOptions:
    config: str
    max_steps: int | None = None  # stop after this global step
    device: str | None = None  # cpu / cuda (default: the config's, CPU when CUDA is missing)
    num_workers: int | None = None


class _EpochIndices(Sampler):
    """Yields ``epoch·n + index`` so the data set knows the epoch, even in persistent workers."""

    def __init__(self, sampler: ResumableDistributedSampler, n: int):
        self.sampler, self.n, self.epoch = sampler, n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        return (self.epoch * self.n + i for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class _EpochDataset(torch.utils.data.Dataset):
    def __init__(self, ds: DiffusionDataset):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key: int) -> dict:
        self.ds.epoch, i = divmod(int(key), len(self.ds))
        return self.ds[i]


# ----------------------------------------------------------------------------------------------
def checkpoint_steps(expdir: str) -> dict[int, str]:
    """``{step: path}`` of every ``model_<int>.pt`` under ``expdir`` (recursively, as 4.1)."""
    out = {}
    for folder, _, files in os.walk(expdir):
        for f in files:
            m = re.fullmatch(r"model_(\d+)\.pt", f)
            if m:
                out[int(m.group(1))] = os.path.join(folder, f)
    return out


def _pick_device(opts: DiffTrainOptions, args, d: _Dist) -> torch.device:
    want = (opts.device or str(args.get("device") or "cuda")).lower()
    if want.startswith("cuda") and torch.cuda.is_available():
        n = torch.cuda.device_count()
        torch.cuda.set_device(d.local_rank % n)
        return torch.device("cuda", d.local_rank % n)
    if opts.device and opts.device.startswith("cuda"):
        raise UsageError("--device cuda: CUDA is not available here", "use --device cpu")
    return torch.device("cpu")


def _load_vocoder(args, device):
    from vdecoder.pretrained import Vocoder

    try:
        voc = Vocoder(args.vocoder.type, args.vocoder.ckpt, device=device)
        voc.load()
        return voc
    except (OSError, ValueError, RuntimeError) as e:
        logger.warning("validation audio is off: %s", e)
        return None


def _resume(model, optimizer, expdir: str):
    """Load the newest checkpoint; returns ``(global_step, train_state or None)``."""
    from common.checkpoint import CheckpointError, strip_module_prefix

    steps = checkpoint_steps(expdir)
    if not steps:
        logger.info("No checkpoint in %s: training from scratch", expdir)
        return 0, None
    path = steps[max(steps)]
    ckpt = load_state(path)
    state = strip_module_prefix(ckpt["model"])
    own = model.state_dict()
    bad = [k for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    for k in bad:
        logger.warning("%s: %s has shape %s, the model %s: re-initialised", path, k,
                       tuple(state[k].shape), tuple(own[k].shape))  # fmt: skip
        del state[k]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        logger.warning("%s: missing keys %s, unexpected keys %s", path, missing[:8], unexpected[:8])
    if isinstance(ckpt.get("optimizer"), dict) and not bad and not missing:
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError, TypeError) as e:
            logger.warning(
                "%s: the optimizer state does not fit (%s): AdamW starts afresh", path, e
            )
    try:
        step = int(ckpt.get("global_step", 0))
    except (TypeError, ValueError):
        raise CheckpointError(f"{path}: global_step is {ckpt.get('global_step')!r}, not a step "
                              "number", "delete or replace this checkpoint") from None  # fmt: skip
    logger.info("Resuming from %s (step %d%s)", path, step,
                ", with optimizer state" if "optimizer" in ckpt else "")  # fmt: skip
    ts = ckpt.get("train_state")
    return step, ts if isinstance(ts, dict) else None


def diverged_hint(args) -> str:
    amp = str(args.train.get("amp_dtype", "fp32") or "fp32") != "fp32"
    return "lower train.lr" + (", or set train.amp_dtype to fp32" if amp else "")


def save_checkpoint(model, optimizer, scaler, args, step, epoch, batch_in_epoch, world_size,
                    config="diffusion.yaml"):  # fmt: skip
    """Write ``model_<step>.pt`` atomically; a model with NaN/inf weights is refused
    (:class:`~common.divergence.TrainingDiverged`) so no such checkpoint is ever written."""
    t = args.train
    check_weights([unwrap(model)], config, step, diverged_hint(args))
    state = {"global_step": int(step), "model": unwrap(model).state_dict()}
    if t.get("save_opt", False):
        state["optimizer"] = optimizer.state_dict()
    state["train_state"] = {
        "epoch": int(epoch), "batch_in_epoch": int(batch_in_epoch), "world_size": int(world_size),
        "batch_size": int(t.batch_size), "scaler": scaler.state_dict() if scaler.is_enabled() else None,
    }  # fmt: skip
    path = os.path.join(args.env.expdir, f"model_{step}.pt")
    torch_save(state, path)
    logger.info("saved %s", path)


@torch.no_grad()
def validate(model, vocoder, loader, writer, args, step: int, device) -> float:
    """Sample every validation file (from noise, or shallow from its mel when the model is
    shallow-only), log mels and audio, and return the mean diffusion loss."""
    from training.plotting import plot_spectrogram_to_numpy

    net = unwrap(model)
    net.eval()
    losses = []
    gen = torch.Generator(device=device)
    for i, b in enumerate(loader):
        b = {k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()}
        gen.manual_seed(i)
        shallow = net.k_step_max != net.timesteps
        mel = net(b["units"], b["f0"], b["volume"], b["spk_id"], gt_spec=b["mel"] if shallow else None,
                  infer=True, infer_speedup=int(args.infer.speedup), method=args.infer.method,
                  k_step=net.k_step_max, generator=gen)  # fmt: skip
        losses.append(float(net(b["units"], b["f0"], b["volume"], b["spk_id"], gt_spec=b["mel"],
                                infer=False, generator=gen)))  # fmt: skip
        name = f"{int(b['spk_id'][0])}_{os.path.basename(b['name'][0])}"
        if writer is not None:
            both = torch.cat([b["mel"][0], mel[0]], dim=1).T.float().cpu().numpy()
            writer.add_image(
                f"{name}/spec", plot_spectrogram_to_numpy(both), step, dataformats="HWC"
            )
            if vocoder is not None:
                sr = vocoder.vocoder_sample_rate
                for tag, m in (("gt", b["mel"]), ("pred", mel)):
                    torch.manual_seed(0)
                    audio = vocoder.infer(m.float(), b["f0"].float())[0].clamp(-1, 1).cpu()
                    writer.add_audio(f"{name}/{tag}.wav", audio, step, sr)
    net.train()
    loss = sum(losses) / max(len(losses), 1)
    if writer is not None:
        writer.add_scalar("validation/loss", loss, step)
        writer.flush()
    logger.info("validation at step %d: loss %.5f over %d file(s)", step, loss, len(losses))
    return loss


# ----------------------------------------------------------------------------------------------
def run(opts: DiffTrainOptions) -> int:
    """Train until ``train.epochs`` (or ``--max_steps``). Returns the last global step."""
    d = _Dist()
    if opts.max_steps is not None and opts.max_steps < 1:
        raise UsageError(f"--max_steps {opts.max_steps}: must be >= 1")
    if opts.num_workers is not None and opts.num_workers < 0:
        raise UsageError(f"--num_workers {opts.num_workers}: must be >= 0")
    args = load_config(opts.config, purpose="train")
    expdir = str(args.env.expdir)
    if d.rank == 0:
        os.makedirs(expdir, exist_ok=True)
    setup_logging(expdir if d.rank == 0 else None, d.rank)
    device = _pick_device(opts, args, d)
    if d.enabled:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://",
                                world_size=d.world_size, rank=d.rank)  # fmt: skip
    try:
        if d.rank != 0:
            return _run(opts, args, expdir, d, device)
        from common.locking import folder_lock

        # one run per expdir (as train.py): a second one stops with one line
        with folder_lock(expdir, "train_diff", wait=False, own_file=True):
            return _run(opts, args, expdir, d, device)
    finally:
        if d.enabled and dist.is_initialized():
            dist.destroy_process_group()


def _run(opts, args, expdir, d: _Dist, device) -> int:
    import yaml

    t = args.train
    rank = d.rank
    seed = int(t.get("seed", 1234))
    if rank == 0:
        write_text(os.path.join(expdir, "config.yaml"),
                   yaml.safe_dump(args.to_dict(), allow_unicode=True, sort_keys=False))  # fmt: skip
        for f in os.listdir(expdir):  # writes cut short by a kill
            if re.fullmatch(r"\.model_\d+\.pt\..*\.tmp", f):
                os.remove(os.path.join(expdir, f))
    if device.type == "cpu":
        logger.warning("Training on the CPU (%d threads): this works but is slow; use a CUDA GPU "
                       "for real training.", torch.get_num_threads())  # fmt: skip

    train_ds = DiffusionDataset(args.data.training_files, args, train=True, seed=seed,
                                config=opts.config)  # fmt: skip
    val_ds = DiffusionDataset(args.data.validation_files, args, train=False) if rank == 0 else None
    vocoder = _load_vocoder(args, device) if rank == 0 else None
    out_dims = vocoder.dimension if vocoder is not None else 128
    if rank == 0:
        train_ds.check_widths(out_dims, opts.config)

    torch.manual_seed(seed)
    model = build_unit2mel(args, out_dims).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(t.lr),
                                  weight_decay=float(t.weight_decay or 0))  # fmt: skip
    global_step, train_state = _resume(model, optimizer, expdir)
    for group in optimizer.param_groups:
        group["initial_lr"] = float(t.lr)
        group["lr"] = float(t.lr) * float(t.gamma) ** max((global_step - 2) // int(t.decay_step), 0)
        group["weight_decay"] = float(t.weight_decay or 0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=int(t.decay_step),
                                                gamma=float(t.gamma), last_epoch=global_step - 2)  # fmt: skip
    amp = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(str(t.get("amp_dtype", "fp32")))
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    if train_state and train_state.get("scaler") and scaler.is_enabled():
        scaler.load_state_dict(train_state["scaler"])

    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    num_workers = int(opts.num_workers if opts.num_workers is not None else t.get("num_workers", 0))
    sampler = ResumableDistributedSampler(train_ds, num_replicas=d.world_size, rank=rank,
                                          shuffle=True, seed=seed, drop_last=False)  # fmt: skip
    epoch_sampler = _EpochIndices(sampler, len(train_ds))
    loader = DataLoader(_EpochDataset(train_ds), batch_size=int(t.batch_size), sampler=epoch_sampler,
                        num_workers=num_workers, collate_fn=collate, persistent_workers=num_workers > 0,
                        pin_memory=device.type == "cuda")  # fmt: skip
    val_loader = None
    if val_ds is not None:
        val_loader = DataLoader(val_ds, batch_size=1, shuffle=False, collate_fn=collate)

    epoch, skip = 0, 0
    if train_state is not None:
        epoch = int(train_state.get("epoch", 0))
        same = (int(train_state.get("world_size", -1)) == d.world_size
                and int(train_state.get("batch_size", -1)) == int(t.batch_size))  # fmt: skip
        skip = int(train_state.get("batch_in_epoch", 0)) if same else 0

    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(os.path.join(expdir, "logs"))
    log_path = os.path.join(expdir, "log_info.txt")
    interval_log, interval_val = int(t.interval_log), int(t.interval_val)
    force_save = int(t.interval_force_save)
    sleep = float(os.environ.get(DEBUG_SLEEP_ENV, "0") or 0)
    max_steps = opts.max_steps
    gen = torch.Generator(device=device)
    last_saved = global_step
    batch_in_epoch = skip
    t_start = time.perf_counter()
    model.train()
    try:
        while epoch < int(t.epochs) and (max_steps is None or global_step < max_steps):
            epoch_sampler.set_epoch(epoch)
            if skip:
                sampler.skip_next(skip * int(t.batch_size))
            for batch_in_epoch, b in enumerate(loader, start=skip + 1):
                global_step += 1
                gen.manual_seed(seed * 1_000_003 + global_step * max(d.world_size, 1) + rank)
                b = {k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()}
                with torch.autocast(
                    device.type, dtype=amp or torch.float32, enabled=amp is not None
                ):
                    loss = model(b["units"], b["f0"], b["volume"], b["spk_id"], b["aug_shift"],
                                 gt_spec=b["mel"].float(), infer=False, generator=gen)  # fmt: skip
                loss_value = loss.item()
                check_loss(loss_value, opts.config, global_step, diverged_hint(args))
                optimizer.zero_grad()
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                if sleep:
                    time.sleep(sleep)
                if rank == 0 and global_step % interval_log == 0:
                    lr = optimizer.param_groups[0]["lr"]
                    el = time.perf_counter() - t_start
                    line = (f"epoch: {epoch} | {batch_in_epoch:3d}/{len(loader) + skip} | "
                            f"{expdir} | step: {global_step} | loss: {loss_value:.6f} | "
                            f"lr: {lr:.6g} | time: {el:.1f}s")  # fmt: skip
                    logger.info(line)
                    with open(log_path, "a", encoding="utf-8") as f:
                        f.write(line + "\n")
                    writer.add_scalar("train/loss", loss_value, global_step)
                    writer.add_scalar("train/lr", lr, global_step)
                if rank == 0 and global_step % interval_val == 0:
                    save_checkpoint(model, optimizer, scaler, args, global_step, epoch,
                                    batch_in_epoch, d.world_size, opts.config)  # fmt: skip
                    last_val = global_step - interval_val
                    if last_val % force_save != 0 and os.path.exists(
                        old := os.path.join(expdir, f"model_{last_val}.pt")
                    ):
                        os.remove(old)
                    last_saved = global_step
                    validate(model, vocoder, val_loader, writer, args, global_step, device)
                if max_steps is not None and global_step >= max_steps:
                    break
            else:
                epoch += 1
                skip = 0
                batch_in_epoch = 0
                continue
            break
        if rank == 0 and global_step != last_saved:
            save_checkpoint(model, optimizer, scaler, args, global_step, epoch, batch_in_epoch,
                            d.world_size, opts.config)  # fmt: skip
        if d.enabled:
            dist.barrier()
        logger.info("Training stopped at step %d", global_step)
    finally:
        if writer is not None:
            writer.close()
    return global_step
