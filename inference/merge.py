"""Static model merge (sovits-4.1.md §12, the web UI's "静态声线融合" / ``utils.mix_model``).

    python -m inference.merge A.pth B.pth [C.pth ...] [--rates 100 100 ...]
                              [--mode convex|linear] [-o ./output.pth]

``rates`` are percentages (default 100 each). ``convex`` (mode 0) weights the models by
``softmax(rates / 100)``, exactly as the reference (so equal rates give equal weights, and 50/100
gives 0.38/0.62, not 1/3 : 2/3); ``linear`` (mode 1) uses ``rates / 100`` as given. Every
floating-point tensor of the first checkpoint's ``model`` becomes ``Σ wᵢ·modelᵢ[key]`` (computed in
float32, stored in the first checkpoint's dtype); the rest of the first checkpoint's dict
(iteration, optimizer, learning_rate) is kept, as the reference did. Checkpoints are read one at a
time (memory: two models), safely (``weights_only``), and the output is written atomically.

Differences from the reference: a key missing from a later checkpoint or with another shape is an
error naming both files (the reference raised a bare KeyError or a broadcasting error); integer
tensors are copied from the first checkpoint instead of being averaged.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence

import torch

from common.errors import UsageError

MODES = {"convex": 0, "linear": 1, 0: 0, 1: 1}
DEFAULT_OUTPUT = os.path.join(os.path.curdir, "output.pth")


def mix_weights(rates: Sequence[float], mode: str | int = "convex") -> torch.Tensor:
    """The per-model weights: ``softmax(rates/100)`` (convex) or ``rates/100`` (linear)."""
    try:
        m = MODES[mode]
    except KeyError:
        raise ValueError(f"mode must be 'convex' (0) or 'linear' (1), got {mode!r}") from None
    r = torch.tensor([float(x) for x in rates], dtype=torch.float32) / 100
    return torch.softmax(r, dim=0) if m == 0 else r


def mix_model(
    model_paths: Sequence[str | os.PathLike],
    mix_rate: Sequence[float] | None = None,
    mode: str | int = "convex",
    output_path: str | os.PathLike = DEFAULT_OUTPUT,
    config: str | os.PathLike | None = None,
) -> str:
    """Merge checkpoints into ``output_path`` (reference default ``./output.pth``); returns it.

    Every checkpoint must have the first one's keys and shapes, and (with ``config``) fit the
    model that config builds; otherwise :class:`CheckpointMismatchError` names the file and
    nothing is written.
    """
    from common.atomic import torch_save
    from common.checkpoint import (
        CheckpointError,
        CheckpointMismatchError,
        check_checkpoint_fit,
        safe_load,
        strip_module_prefix,
    )

    if not model_paths:
        raise ValueError("no checkpoints to merge")
    if mix_rate is None:
        mix_rate = [100.0] * len(model_paths)
    if len(mix_rate) != len(model_paths):
        raise ValueError(f"{len(model_paths)} checkpoints but {len(mix_rate)} rates")
    weights = mix_weights(mix_rate, mode)

    def load_model(path):
        ckpt = safe_load(path)
        if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
            raise CheckpointError(f"{path}: not a so-vits-svc checkpoint (no 'model' dict)",
                                  "give G_*.pth files")  # fmt: skip
        return ckpt

    first = load_model(model_paths[0])
    base = strip_module_prefix(first["model"])
    if config is not None:  # every model must fit the config
        expected = _model_state(config)
        check_checkpoint_fit(model_paths[0], base, expected, f"the model built from {config}")
    else:  # no config: the first must at least be a generator
        check_checkpoint_fit(model_paths[0], base, {"emb_g.weight": base.get("emb_g.weight")},
                             "a merge of generators", max_mismatches=len(base))  # fmt: skip
    acc = {k: v.float() * weights[0] if v.is_floating_point() else v for k, v in base.items()}
    for path, w in zip(model_paths[1:], weights[1:]):
        other = strip_module_prefix(load_model(path)["model"])
        # the same keys and shapes as the first (emb_g included: speakers are merged row by row)
        check_checkpoint_fit(path, other, base, f"{model_paths[0]} (merged models must share one "
                             "config)", max_mismatches=0, optional_prefixes=())  # fmt: skip
        if other["emb_g.weight"].shape != base["emb_g.weight"].shape:
            raise CheckpointMismatchError(
                f"{path}: emb_g.weight has shape {tuple(other['emb_g.weight'].shape)} but "
                f"{tuple(base['emb_g.weight'].shape)} in {model_paths[0]}; the models cannot be "
                "merged", "merge models trained with the same config (n_speakers)")  # fmt: skip
        for k, v in acc.items():
            if v.is_floating_point():
                v.add_(other[k].float() * w)
        del other
    first["model"] = {k: v.to(base[k].dtype) for k, v in acc.items()}
    torch_save(first, output_path)
    return str(output_path)


def _model_state(config: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict (keys and shapes) of the generator ``config`` builds."""
    from common.hparams import load_config
    from models import SynthesizerTrn

    hps = load_config(config, purpose="infer")
    with torch.device("meta"):
        net = SynthesizerTrn(hps.data.filter_length // 2 + 1,
                             hps.train.segment_size // hps.data.hop_length, **hps.model)  # fmt: skip
    return net.state_dict()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Static voice merge of so-vits-svc checkpoints")
    p.add_argument("models", nargs="+", help="G_*.pth checkpoints (same config)")
    p.add_argument("-r", "--rates", type=float, nargs="+", default=None,
                   help="percentages, one per model (default 100 each)")  # fmt: skip
    p.add_argument("-m", "--mode", choices=["convex", "linear"], default="convex",
                   help="convex: softmax(rates/100); linear: rates/100")  # fmt: skip
    p.add_argument("-o", "--output", default=DEFAULT_OUTPUT)
    p.add_argument("-c", "--config", default=None,
                   help="the models' config.json: every model is checked against it")  # fmt: skip
    args = p.parse_args(argv)
    if args.rates is not None and len(args.rates) != len(args.models):
        raise UsageError(f"--rates: {len(args.models)} checkpoints but {len(args.rates)} rates",
                         "give one rate per model")  # fmt: skip
    if args.rates is not None and any(not math.isfinite(r) or r < 0 for r in args.rates):
        raise UsageError(f"--rates {args.rates}: out of range; rates are percentages >= 0")
    out = mix_model(args.models, args.rates, args.mode, args.output, args.config)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    from common.cli import run_main

    sys.exit(run_main(main))
