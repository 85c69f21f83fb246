"""K-means cluster models of content features (sovits-4.1.md §14).

``logs/44k/kmeans_10000.pt`` holds ``{speaker_name: {"n_features_in_": C, "_n_threads": int,
"cluster_centers_": np.float32 [K, C]}}`` (the reference layout; K may be smaller than 10000 for a
speaker with fewer feature frames than clusters). It is read with ``weights_only`` loading, so a
file cannot run code, and no sklearn object is needed: prediction is the nearest centre in
Euclidean distance, computed with a matrix product in chunks.

At inference the features of a slice (frame rate, ``[T, C]``) are mixed as
``c = r·centers[nearest(c)] + (1 − r)·c``.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from common.errors import InputError


class SpeakerNotInClusterModel(InputError, KeyError):
    """The cluster model has no entry for the speaker asked for."""


class ClusterModel:
    """Nearest-centre predictor for one speaker (the part of sklearn's KMeans inference uses)."""

    def __init__(self, cluster_centers: np.ndarray, n_threads: int = 1):
        centers = np.ascontiguousarray(np.asarray(cluster_centers, dtype=np.float32))
        if centers.ndim != 2 or centers.shape[0] == 0:
            raise ValueError(
                f"cluster centres must be a non-empty [K, C] array, got {centers.shape}"
            )
        self.cluster_centers_ = centers
        self.n_features_in_ = int(centers.shape[1])
        self._n_threads = int(n_threads)
        self._centers_t = torch.from_numpy(centers)
        self._sq_norms = (self._centers_t.double() ** 2).sum(1).float()

    def predict(self, x: np.ndarray | torch.Tensor, chunk: int = 2048) -> np.ndarray:
        """Index of the nearest centre for each row of ``x`` ``[N, C]`` (int64 ``[N]``)."""
        xt = (
            torch.as_tensor(np.asarray(x, dtype=np.float32))
            if not isinstance(x, torch.Tensor)
            else x.float().cpu()
        )
        if xt.ndim != 2 or xt.shape[1] != self.n_features_in_:
            raise ValueError(
                f"features have shape {tuple(xt.shape)}; this cluster model expects [N, {self.n_features_in_}]"
            )
        out = torch.empty(xt.shape[0], dtype=torch.long)
        with torch.inference_mode():
            for i in range(0, xt.shape[0], chunk):
                part = xt[i : i + chunk]
                # ||x - c||² = ||x||² - 2 x·c + ||c||²; ||x||² does not change the argmin.
                d = self._sq_norms[None, :] - 2.0 * (part @ self._centers_t.T)
                out[i : i + chunk] = d.argmin(dim=1)
        return out.numpy()

    def centers_of(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """The nearest centre of each row of ``x`` → ``[N, C]`` float32."""
        return self.cluster_centers_[self.predict(x)]


def get_cluster_model(ckpt_path: str | os.PathLike) -> dict[str, ClusterModel]:
    """Read ``kmeans_10000.pt`` (ours or the reference's) → ``{speaker: ClusterModel}``."""
    from common.checkpoint import CheckpointError, safe_load

    ckpt = safe_load(ckpt_path)
    if not isinstance(ckpt, dict) or not ckpt:
        raise CheckpointError(f"{ckpt_path}: not a cluster model (expected {{speaker: centres}})")
    models = {}
    for spk, entry in ckpt.items():
        if not isinstance(entry, dict) or "cluster_centers_" not in entry:
            raise CheckpointError(f"{ckpt_path}: speaker {spk!r} has no 'cluster_centers_'")
        centers = entry["cluster_centers_"]
        if isinstance(centers, torch.Tensor):
            centers = centers.numpy()
        models[str(spk)] = ClusterModel(centers, entry.get("_n_threads", 1))
    return models


def _model_for(model: dict[str, ClusterModel], speaker) -> ClusterModel:
    try:
        return model[str(speaker)]
    except KeyError:
        raise SpeakerNotInClusterModel(
            f"speaker {speaker!r} is not in the cluster model (it has: {', '.join(model)})",
            "rebuild it with cluster/train_cluster.py after adding the speaker's data",
        ) from None


def get_cluster_result(model: dict[str, ClusterModel], x: np.ndarray, speaker) -> np.ndarray:
    return _model_for(model, speaker).predict(x)


def get_cluster_center_result(model: dict[str, ClusterModel], x: np.ndarray, speaker) -> np.ndarray:
    """``x`` ``[N, C]`` → the nearest centre of each row ``[N, C]`` (reference name)."""
    return _model_for(model, speaker).centers_of(x)


def get_center(model: dict[str, ClusterModel], x: np.ndarray, speaker) -> np.ndarray:
    return _model_for(model, speaker).cluster_centers_[x]


def read_unit_files(paths) -> list[np.ndarray]:
    """Load content-unit files (``*.soft.pt``, ``[1, C, T]``) → list of float32 ``[T, C]``.

    Used by k-means and index training: a bad file (unreadable, not a ``[1, C, T]`` float tensor,
    NaN/Inf, or another width than the first good file) is reported as one line on stderr naming
    it and the fix, and skipped; the others are used.
    """
    import sys

    from common.checkpoint import CheckpointError, safe_load

    out: list[np.ndarray] = []
    width = None
    for path in paths:
        problem = None
        try:
            t = safe_load(path)
        except CheckpointError as e:
            problem = str(e).removeprefix(f"{path}: ")
        else:
            if not isinstance(t, torch.Tensor) or t.dim() not in (2, 3) or t.numel() == 0:
                shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                problem = f"not a [1, C, T] feature tensor (got {shape})"
            elif not t.is_floating_point() or not torch.isfinite(t).all():
                problem = "not finite float features (NaN, Inf or integers)"
            else:
                t = t.squeeze(0) if t.dim() == 3 else t
                if width is not None and t.shape[0] != width:
                    problem = (
                        f"{t.shape[0]} channels, the other files have {width} (another encoder?)"
                    )
        if problem is not None:
            print(f"{path}: {problem}; skipped (re-run preprocess_hubert_f0.py to recompute it)",
                  file=sys.stderr, flush=True)  # fmt: skip
            continue
        width = t.shape[0]
        out.append(t.float().numpy().T)
    return out
