"""Train per-speaker k-means models of content features → ``<output>/kmeans_10000.pt`` (§2.7, §14).

    python cluster/train_cluster.py [--dataset ./dataset/44k] [--output logs/44k] [--gpu]
    python -m cluster.train_cluster ...            (the same)

For every speaker folder ``<dataset>/<spk>/`` the ``*.soft.pt`` files (``[1, C, T16]``, at the
encoder's frame rate, as the reference) are stacked to ``[N, C]`` and clustered:

- default: sklearn ``KMeans(n_clusters)`` (full k-means, as the reference's ``__main__``);
- ``--minibatch``: sklearn ``MiniBatchKMeans(batch_size=4096, max_iter=80)`` (much faster);
- ``--gpu``: :class:`cluster.kmeans.KMeansTorch` on CUDA when available, else on the CPU.

``--n_clusters`` defaults to 10000 (the reference's fixed value) and names the output file. A
speaker with fewer feature frames than clusters gets as many clusters as it has frames (a message
says so). The file layout is the reference's, written atomically.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

if not __package__:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from common.errors import InputError, UsageError  # noqa: E402

logger = logging.getLogger("train_cluster")


def load_features(in_dir: Path) -> np.ndarray:
    """Stack every usable ``*.soft.pt`` under ``in_dir`` (sorted) → float32 ``[N, C]``.

    A bad file (unreadable, not ``[1, C, T]``, NaN, or another width than the first good file)
    is reported as one line naming it and the fix, and skipped (:func:`cluster.read_unit_files`).
    """
    from cluster import read_unit_files

    feats = read_unit_files(sorted(Path(in_dir).glob("*.soft.pt")))
    if not feats:
        raise InputError(f"{in_dir}: no *.soft.pt feature files that can be used",
                         "run preprocess_hubert_f0.py first")  # fmt: skip
    return np.ascontiguousarray(np.concatenate(feats, axis=0), dtype=np.float32)


def train_cluster(
    in_dir: Path | np.ndarray,
    n_clusters: int = 10000,
    use_minibatch: bool = False,
    verbose: bool = False,
    use_gpu: bool = False,
    seed: int = 0,
    device: str | None = None,
) -> dict:
    """Cluster one speaker's features; returns the reference's per-speaker entry."""
    features = in_dir if isinstance(in_dir, np.ndarray) else load_features(Path(in_dir))
    features = np.ascontiguousarray(features, dtype=np.float32)
    n = features.shape[0]
    if n < n_clusters:
        logger.warning("%s: only %d feature frames, fewer than %d clusters; using %d clusters",
                       in_dir if not isinstance(in_dir, np.ndarray) else "features", n, n_clusters, n)  # fmt: skip
        n_clusters = n
    if use_gpu:
        from cluster.kmeans import KMeansTorch

        km = KMeansTorch(n_clusters, max_iter=500, seed=seed, device=device, verbose=verbose).fit(
            features
        )
        centers = km.cluster_centers_.cpu().numpy()
        n_threads = 4  # the reference stores 4 for its GPU trainer
    else:
        from sklearn.cluster import KMeans, MiniBatchKMeans

        if use_minibatch:
            km = MiniBatchKMeans(n_clusters=n_clusters, verbose=verbose, batch_size=4096,
                                 max_iter=80, random_state=seed, n_init="auto").fit(features)  # fmt: skip
        else:
            km = KMeans(n_clusters=n_clusters, verbose=verbose, random_state=seed,
                        n_init="auto").fit(features)  # fmt: skip
        centers = km.cluster_centers_
        n_threads = int(getattr(km, "_n_threads", 1))
    return {
        "n_features_in_": int(features.shape[1]),
        "_n_threads": n_threads,
        "cluster_centers_": np.ascontiguousarray(centers, dtype=np.float32),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train per-speaker k-means cluster models")
    p.add_argument("--dataset", type=Path, default=Path("./dataset/44k"),
                   help="folder of speaker folders holding *.soft.pt")  # fmt: skip
    p.add_argument("--output", type=Path, default=Path("logs/44k"), help="output folder")
    p.add_argument("--gpu", action="store_true", default=False,
                   help="torch k-means (CUDA if available, else CPU)")  # fmt: skip
    p.add_argument("--n_clusters", type=int, default=10000, help="clusters per speaker (10000)")
    p.add_argument("--minibatch", action="store_true", help="sklearn MiniBatchKMeans (faster)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    if args.n_clusters < 1:
        raise UsageError(f"--n_clusters {args.n_clusters}: out of range; must be at least 1")
    if not args.dataset.is_dir():
        raise InputError(f"{args.dataset}: dataset folder not found",
                         "run resample.py and preprocess_hubert_f0.py first, or give --dataset")  # fmt: skip
    speakers = sorted(
        d.name for d in args.dataset.iterdir() if d.is_dir() and not d.name.startswith(".")
    )
    if not speakers:
        raise InputError(f"{args.dataset}: no speaker folders", "expected <dataset>/<speaker>/")
    from common.atomic import remove_stale_temporaries, torch_save
    from common.locking import folder_lock

    out = args.output / f"kmeans_{args.n_clusters}.pt"
    with folder_lock(args.output, "kmeans", own_file=True):
        remove_stale_temporaries(args.output, f".{out.name}.*.tmp")
        ckpt = {}
        for spk in speakers:
            t0 = time.time()
            logger.info("train kmeans for %s ...", spk)
            ckpt[spk] = train_cluster(args.dataset / spk, args.n_clusters, use_minibatch=args.minibatch,
                                      verbose=args.verbose, use_gpu=args.gpu, seed=args.seed)  # fmt: skip
            k = ckpt[spk]["cluster_centers_"].shape[0]
            logger.info("%s: %d clusters in %.1f s", spk, k, time.time() - t0)
        torch_save(ckpt, out)
    logger.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    from common.cli import run_main

    sys.exit(run_main(main))
