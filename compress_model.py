"""Make a release checkpoint from a training ``G_*.pth`` (sovits-4.1.md §2.9).

Drops the posterior encoder (``enc_q.*``, only needed for training) and the optimizer state;
``-hf`` also stores the weights as float16. The training step (``train_state``, else the
``G_<step>`` file name) is kept as ``step``, the epoch as ``iteration`` (4.1 wrote 0). The result
loads like any checkpoint (the missing ``enc_q`` keys keep their fresh initial values) and is used
for inference.

    python compress_model.py -c configs/config.json -i logs/44k/G_30400.pth [-o out.pth] [-hf]

The default output is ``compressed/<input stem>_release[_half].pth`` (under the current folder,
where the web UI's Tools tab writes too): a release is not a training step, so it is not written
next to the ``G_*.pth`` files of ``logs/44k/`` (where it would be listed as one more voice).
"""

from __future__ import annotations

import argparse
import os
import sys


def compress(
    config: str, input_model: str, ishalf: bool, output_model: str, allow_partial: bool = False
) -> dict:
    import torch

    from common.atomic import torch_save
    from common.checkpoint import (
        CheckpointError,
        check_checkpoint_fit,
        checkpoint_step,
        safe_load,
        strip_module_prefix,
    )
    from common.hparams import load_config
    from models import SynthesizerTrn

    hps = load_config(config, purpose="train")
    net_g = SynthesizerTrn(
        hps.data.filter_length // 2 + 1, hps.train.segment_size // hps.data.hop_length, **hps.model
    )
    optim_g = torch.optim.AdamW(
        net_g.parameters(), hps.train.learning_rate, betas=tuple(hps.train.betas), eps=hps.train.eps
    )
    ckpt = safe_load(input_model)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(
            f"{input_model}: not a so-vits-svc checkpoint (no 'model' entry)",
            "give a G_*.pth written by train.py",
        )
    model = strip_module_prefix(ckpt["model"])
    check_checkpoint_fit(input_model, model, net_g.state_dict(), f"the model built from {config}",
                         allow_partial=allow_partial)  # fmt: skip
    kept = {
        k: (v.half() if ishalf and v.is_floating_point() else v)
        for k, v in model.items()
        if "enc_q" not in k
    }
    out = {
        "model": kept,
        # the training epoch (4.1's "iteration") and step are kept (4.1 wrote 0): the loader
        # says which step a release file was taken at
        "iteration": int(ckpt.get("iteration", 0) or 0),
        "optimizer": optim_g.state_dict(),
        "learning_rate": 0.0001,
    }
    step = checkpoint_step(ckpt, input_model)
    if step is not None:
        out["step"] = step
    torch_save(out, output_model)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-c", "--config", type=str, default="configs/config.json")
    p.add_argument("-i", "--input", type=str, required=True, help="training checkpoint G_*.pth")
    p.add_argument(
        "-o",
        "--output",
        type=str,
        default=None,
        help="default: compressed/<input stem>_release[_half]<ext>",
    )
    p.add_argument(
        "-hf", "--half", action="store_true", default=False, help="store the weights as float16"
    )
    p.add_argument("--allow_partial", action="store_true",
                   help="experts: compress a checkpoint that does not fit the config")  # fmt: skip
    args = p.parse_args(argv)
    output = args.output
    if output is None:
        stem, ext = os.path.splitext(os.path.basename(args.input))
        output = os.path.join(
            "compressed", stem + "_release" + ("_half" if args.half else "") + ext
        )
    compress(args.config, args.input, args.half, output, args.allow_partial)
    size_in, size_out = os.path.getsize(args.input), os.path.getsize(output)
    print(
        f"wrote {output}: {size_out / 1e6:.1f} MB ({100 * size_out / size_in:.0f}% of "
        f"{size_in / 1e6:.1f} MB)"
    )
    return 0


if __name__ == "__main__":
    from common.cli import run_main

    sys.exit(run_main(main))
