"""Build per-speaker faiss retrieval indexes → ``<output_dir>/feature_and_index.npz`` (§2.6, §14).

    python train_index.py [--root_dir dataset/44k] [-c ./configs/config.json] [--output_dir logs/44k]

One index per speaker of the config's ``spk`` map, keyed by speaker id, from
``<root_dir>/<speaker>/*.wav.soft.pt``. The reference pickled them into ``feature_and_index.pkl``;
we write a pickle-free numpy archive instead (see :mod:`cluster.feature_index`). Use it at
inference with ``-fr -cr <ratio>`` (``-cm`` defaults to this file).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

logger = logging.getLogger("train_index")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    p = argparse.ArgumentParser(description="Build per-speaker faiss feature-retrieval indexes")
    p.add_argument("--root_dir", type=str, default="dataset/44k", help="path to the dataset root")
    p.add_argument("-c", "--config", type=str, default="./configs/config.json", help="config JSON")
    p.add_argument("--output_dir", type=str, default="logs/44k", help="output folder")
    p.add_argument("--seed", type=int, default=None, help="shuffle seed (default: random)")
    args = p.parse_args(argv)

    from cluster.feature_index import save_feature_index, train_index
    from common.atomic import remove_stale_temporaries
    from common.config_check import validate_spk
    from common.hparams import load_config
    from common.locking import folder_lock

    hps = load_config(args.config)
    validate_spk(hps.to_dict(), args.config)
    out = os.path.join(args.output_dir, "feature_and_index.npz")
    with folder_lock(args.output_dir, "index", own_file=True):
        remove_stale_temporaries(args.output_dir, ".feature_and_index.npz.*.tmp")
        result = {}
        for name, spk_id in hps.spk.items():
            logger.info("now, index %s feature...", name)
            result[int(spk_id)] = train_index(os.path.join(args.root_dir, name), seed=args.seed)
            logger.info("%s: %d rows indexed", name, result[int(spk_id)].ntotal)
        save_feature_index(result, out)
    logger.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    from common.cli import run_main

    sys.exit(run_main(main))
