"""K-means in torch (the ``--gpu`` trainer; it runs on CPU as well).

Lloyd iterations with chunked distance computations, so memory stays at ``chunk × K`` floats
beyond the data and the centres. Initial centres are distinct random data rows (as the
reference's ``KMeansGPU``); an empty cluster is re-seeded with the row farthest from its centre.
Stops when the largest centre shift (relative to the data's spread) is below ``tol`` or after
``max_iter`` iterations. Deterministic for a given ``seed`` and device.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)


class KMeansTorch:
    def __init__(
        self,
        n_clusters: int,
        max_iter: int = 500,
        tol: float = 1e-4,
        seed: int = 0,
        device: str | torch.device | None = None,
        chunk: int = 8192,
        verbose: bool = False,
    ):
        self.n_clusters = int(n_clusters)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.seed = int(seed)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.chunk = int(chunk)
        self.verbose = verbose
        self.cluster_centers_: torch.Tensor | None = None
        self.n_iter_ = 0

    def _assign(self, x: torch.Tensor, centers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels [N], squared distance to the assigned centre [N])."""
        c_sq = (centers * centers).sum(1)
        labels = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
        dists = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
        for i in range(0, x.shape[0], self.chunk):
            part = x[i : i + self.chunk]
            d = c_sq[None, :] - 2.0 * (part @ centers.T)
            m, idx = d.min(dim=1)
            labels[i : i + self.chunk] = idx
            dists[i : i + self.chunk] = (m + (part * part).sum(1)).clamp_min(0)
        return labels, dists

    @torch.inference_mode()
    def fit(self, features) -> KMeansTorch:
        x = torch.as_tensor(features, dtype=torch.float32).to(self.device)
        n, dim = x.shape
        if n < self.n_clusters:
            raise ValueError(f"{n} feature rows are fewer than n_clusters={self.n_clusters}")
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        perm = torch.randperm(n, generator=gen)[: self.n_clusters].to(self.device)
        centers = x[perm].clone()
        spread = x.var(0).sum().clamp_min(1e-12)
        for it in range(1, self.max_iter + 1):
            labels, dists = self._assign(x, centers)
            sums = torch.zeros_like(centers).index_add_(0, labels, x)
            counts = torch.bincount(labels, minlength=self.n_clusters).to(x.dtype)
            new = sums / counts.clamp_min(1)[:, None]
            empty = torch.nonzero(counts == 0).flatten()
            if len(empty):  # re-seed empty clusters with the worst-fitted rows
                far = torch.topk(dists, len(empty)).indices
                new[empty] = x[far]
            shift = ((new - centers) ** 2).sum(1).max() / spread
            centers = new
            self.n_iter_ = it
            if self.verbose:
                logger.info("k-means iteration %d: inertia %.4g, max shift %.3g", it,
                            float(dists.sum()), float(shift))  # fmt: skip
            if shift <= self.tol and len(empty) == 0:
                break
        self.cluster_centers_ = centers
        return self

    def predict(self, features) -> torch.Tensor:
        x = torch.as_tensor(features, dtype=torch.float32).to(self.device)
        with torch.inference_mode():
            return self._assign(x, self.cluster_centers_)[0]
