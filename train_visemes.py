"""Train the motion sidecar's visemes model: voice-model z → 61 Live Link Face values.

    python motion/prepare_visemes.py --takes records -m logs/44k/G_800.pth -s alice
    python train_visemes.py -c configs/visemes.json -m visemes

Checkpoints ``V_<step>.pth`` / ``V_best.pth``, TensorBoard events and ``val_metrics.json`` go to
``logs/<model>``; training resumes from the newest ``V_<step>.pth`` there (one run per folder: a
second one stops with one line). See motion/trainer.py; exit codes as common/cli.py.
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-c", "--config", default="./configs/visemes.json", help="JSON config file")
    p.add_argument("-m", "--model", required=True, help="model name: logs/<model>")
    p.add_argument("--model_dir", default=None, help="output folder (default ./logs/<model>)")
    p.add_argument("--max_steps", type=int, default=None, help="override train.max_steps")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from motion.trainer import train

    train(args.config, args.model, args.model_dir, args.max_steps, args.device)
    return 0


if __name__ == "__main__":
    from common.cli import run_main

    sys.exit(run_main(main))
