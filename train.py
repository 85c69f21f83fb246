"""Train the so-vits-svc 4.1 model (generator + discriminator).

    python train.py -c configs/config.json -m 44k                 # one device (CUDA, else CPU)
    torchrun --nproc_per_node=4 train.py -c configs/config.json -m 44k      # several GPUs
    torchrun --nnodes=2 --node_rank=0 --master_addr=HOST --nproc_per_node=8 train.py ...

Checkpoints ``G_<step>.pth``/``D_<step>.pth``, TensorBoard events, ``train.log`` and a copy of the
config go to ``logs/<model>``. Training resumes from the newest checkpoint pair found there; a
pretrained ``G_0.pth``/``D_0.pth`` placed there is fine-tuned from (keys whose shape differs,
e.g. ``emb_g`` for another speaker count, are re-initialised with a warning).
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "-c", "--config", type=str, default="./configs/config.json", help="JSON config file"
    )
    p.add_argument("-m", "--model", type=str, required=True, help="model name: logs/<model>")
    p.add_argument(
        "--model_dir", type=str, default=None, help="output folder (default ./logs/<model>)"
    )
    p.add_argument(
        "--max_steps",
        type=int,
        default=None,
        help="stop after this many optimizer steps in total (a resume counts on)",
    )
    p.add_argument("--log_interval", type=int, default=None, help="override train.log_interval")
    p.add_argument(
        "--eval_interval",
        type=int,
        default=None,
        help="override train.eval_interval (evaluation + checkpoint)",
    )
    p.add_argument("--keep_ckpts", type=int, default=None, help="override train.keep_ckpts")
    p.add_argument("--num_workers", type=int, default=None, help="data-loader workers per rank")
    p.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default=None,
        help="default: cuda when available, else cpu",
    )
    p.add_argument(
        "--grad_clip_norm",
        type=float,
        default=None,
        help="clip the total gradient norm of G and of D to this (0 = off, default)",
    )
    p.add_argument(
        "--grad_clip_value",
        type=float,
        default=None,
        help="clamp every gradient element to +-this (0 = off, default)",
    )
    p.add_argument(
        "--allow_partial",
        action="store_true",
        help="experts: resume / fine-tune from checkpoints that do not fit the config",
    )
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from training.trainer import TrainOptions, check_options, run

    opts = TrainOptions(**vars(args))
    check_options(opts)
    run(opts)
    return 0


if __name__ == "__main__":
    from common.cli import run_main

    sys.exit(run_main(main))
