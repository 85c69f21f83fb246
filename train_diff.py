"""Train the shallow-diffusion model (sovits-4.1.md §13).

    python train_diff.py -c configs/diffusion.yaml
    torchrun --nproc_per_node=4 train_diff.py -c configs/diffusion.yaml     # several GPUs

Needs the diffusion features (``preprocess_hubert_f0.py --use_diff``). Checkpoints
``model_<step>.pt``, TensorBoard events (``logs/``), ``log_info.txt`` and ``config.yaml`` go to
``env.expdir`` (``logs/44k/diffusion``); training resumes from the newest checkpoint there, and a
pretrained ``model_0.pt`` placed there is fine-tuned from.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-c", "--config", type=str, required=True, help="path to the config file")
    p.add_argument("--max_steps", type=int, default=None, help="stop after this global step")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="default: the config's device, the CPU when CUDA is missing")  # fmt: skip
    p.add_argument("--num_workers", type=int, default=None, help="override train.num_workers")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from diffusion.trainer import DiffTrainOptions, run

    run(DiffTrainOptions(**vars(args)))
    return 0


if __name__ == "__main__":
    from common.cli import run_main

    sys.exit(run_main(main))
