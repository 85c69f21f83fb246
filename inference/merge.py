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
import os
import sys
from collections.abc import Sequence

import torch

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
) -> str:
    """Merge checkpoints into ``output_path`` (reference default ``./output.pth``); returns it."""
    from common.atomic import torch_save
    from common.checkpoint import CheckpointError, safe_load, strip_module_prefix

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
            raise CheckpointError(f"{path}: not a so-vits-svc checkpoint (no 'model' dict)")
        return ckpt

    first = load_model(model_paths[0])
    base = strip_module_prefix(first["model"])
    acc = {k: v.float() * weights[0] if v.is_floating_point() else v for k, v in base.items()}
    for path, w in zip(model_paths[1:], weights[1:]):
        other = strip_module_prefix(load_model(path)["model"])
        for k, v in acc.items():
            if k not in other:
                raise CheckpointError(f"{path}: has no {k} (present in {model_paths[0]})")
            if other[k].shape != base[k].shape:
                raise CheckpointError(
                    f"{path}: {k} has shape {tuple(other[k].shape)} but "
                    f"{tuple(base[k].shape)} in {model_paths[0]}; the models cannot be merged"
                )
            if v.is_floating_point():
                v.add_(other[k].float() * w)
        del other
    first["model"] = {k: v.to(base[k].dtype) for k, v in acc.items()}
    torch_save(first, output_path)
    return str(output_path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Static voice merge of so-vits-svc checkpoints")
    p.add_argument("models", nargs="+", help="G_*.pth checkpoints (same config)")
    p.add_argument("-r", "--rates", type=float, nargs="+", default=None,
                   help="percentages, one per model (default 100 each)")  # fmt: skip
    p.add_argument("-m", "--mode", choices=["convex", "linear"], default="convex",
                   help="convex: softmax(rates/100); linear: rates/100")  # fmt: skip
    p.add_argument("-o", "--output", default=DEFAULT_OUTPUT)
    args = p.parse_args(argv)
    try:
        out = mix_model(args.models, args.rates, args.mode, args.output)
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
