"""Per-speaker faiss retrieval indexes (sovits-4.1.md §14, from RVC), stored without pickle.

Our file: ``logs/44k/feature_and_index.npz`` — a plain numpy archive (``allow_pickle=False``)
holding ``format`` (``"sovits-feature-index-v1"``), ``speaker_ids`` (int64 ``[S]``) and, per
speaker id ``i``, ``index_<i>`` = the bytes of ``faiss.serialize_index`` as uint8. faiss parses
them as data; nothing is unpickled.

The reference's ``feature_and_index.pkl`` (``pickle`` of ``{speaker_id: faiss.Index}``) is never
unpickled (a pickle can run code): :func:`load_feature_index` recognises it and refuses it with
the command that rebuilds the index from the dataset's ``.soft.pt`` files (seconds to minutes).

Building (:func:`train_index`, the reference's ``utils.train_index``): one speaker's
``*.wav.soft.pt`` rows ``[T16, C]`` (sorted files), concatenated and shuffled; above 2e5 rows they
are replaced by 10000 MiniBatchKMeans centres; ``n_ivf = min(int(16·√N), N // 39)`` (at least 1,
where the reference failed with 0 on tiny data); ``IVF{n_ivf},Flat``, ``nprobe = 1``; trained,
then added in batches of 8192.

Retrieval (:meth:`FeatureIndex.retrieve`): 8 nearest rows, weights ``(1/score)²`` normalised per
frame (score clamped away from 0, missing neighbours weighted 0: the reference produced NaN / read
row −1 in those cases), ``c = r·Σ w·rows + (1 − r)·c``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from common.errors import UserError

FORMAT = "sovits-feature-index-v1"
REBUILD_HINT = (
    "rebuild it with `python train_index.py --root_dir dataset/44k -c configs/config.json "
    "--output_dir logs/44k`, which writes feature_and_index.npz"
)


class FeatureIndexError(UserError, RuntimeError):
    pass


def _serialize(index) -> np.ndarray:
    import faiss

    return np.asarray(faiss.serialize_index(index), dtype=np.uint8)


def _deserialize(data) -> object:
    import faiss

    return faiss.deserialize_index(np.frombuffer(bytes(data), dtype=np.uint8).copy())


def train_index(spk_dir: str | os.PathLike, seed: int | None = None):
    """Build one speaker's faiss IVF index from ``<spk_dir>/*.wav.soft.pt``."""
    import faiss

    from cluster import read_unit_files

    spk_dir = Path(spk_dir)
    files = (
        sorted(p for p in spk_dir.iterdir() if ".wav.soft.pt" in p.name) if spk_dir.is_dir() else []
    )
    if not files:
        raise FeatureIndexError(f"{spk_dir}: no *.wav.soft.pt files",
                                "run preprocess_hubert_f0.py first")  # fmt: skip
    rows = read_unit_files(files)
    if not rows:
        raise FeatureIndexError(f"{spk_dir}: no usable *.wav.soft.pt files",
                                "run preprocess_hubert_f0.py first")  # fmt: skip
    big = np.concatenate(rows, 0).astype(np.float32)
    rng = np.random.default_rng(seed)
    big = big[rng.permutation(big.shape[0])]
    if big.shape[0] > 2e5:
        from sklearn.cluster import MiniBatchKMeans

        big = MiniBatchKMeans(n_clusters=10000, batch_size=256 * (os.cpu_count() or 1),
                              compute_labels=False, init="random", n_init=1,
                              random_state=seed).fit(big).cluster_centers_.astype(np.float32)  # fmt: skip
    big = np.ascontiguousarray(big)
    n = big.shape[0]
    n_ivf = max(1, min(int(16 * np.sqrt(n)), n // 39))
    index = faiss.index_factory(big.shape[1], f"IVF{n_ivf},Flat")
    faiss.extract_index_ivf(index).nprobe = 1
    index.train(big)
    for i in range(0, n, 8192):
        index.add(big[i : i + 8192])
    return index


def save_feature_index(indexes: dict[int, object], path: str | os.PathLike) -> None:
    """Write ``{speaker_id: faiss.Index}`` as our pickle-free ``.npz`` (atomically)."""
    from common.atomic import atomic_open

    ids = sorted(int(k) for k in indexes)
    arrays = {"format": np.array(FORMAT), "speaker_ids": np.array(ids, dtype=np.int64)}
    for i in ids:
        arrays[f"index_{i}"] = _serialize(indexes[i])
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def load_feature_index(path: str | os.PathLike) -> dict[int, FeatureIndex]:
    """Read our ``.npz`` → ``{speaker_id: FeatureIndex}``; a reference ``.pkl`` is refused."""
    path = Path(path)
    if not path.is_file():
        raise FeatureIndexError(f"{path}: feature index not found; {REBUILD_HINT}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:1] == b"\x80" or path.suffix == ".pkl":
        raise FeatureIndexError(
            f"{path}: this is a so-vits-svc 4.1 pickled index; it is not unpickled because a "
            f"pickle can run code. {REBUILD_HINT[0].upper()}{REBUILD_HINT[1:]}."
        )
    if magic[:2] == b"PK":
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["format"]) != FORMAT:
                    raise FeatureIndexError(f"{path}: unknown index format {z['format']!s}")
                raw = {int(i): _deserialize(z[f"index_{int(i)}"]) for i in z["speaker_ids"]}
        except (KeyError, ValueError, OSError) as e:
            raise FeatureIndexError(
                f"{path}: not a readable feature index ({e}); {REBUILD_HINT}"
            ) from None
    else:
        raise FeatureIndexError(f"{path}: not a feature index file; {REBUILD_HINT}")
    return {k: FeatureIndex(v) for k, v in raw.items()}


class FeatureIndex:
    """One speaker's index with its stored rows (``big_npy``) for retrieval."""

    def __init__(self, index):
        self.index = index
        self._rows: np.ndarray | None = None

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def rows(self) -> np.ndarray:
        if self._rows is None:
            self._rows = self.index.reconstruct_n(0, self.index.ntotal)
        return self._rows

    def retrieve(self, feats: np.ndarray, k: int = 8) -> np.ndarray:
        """Weighted mean of the ``k`` nearest stored rows for each row of ``feats`` ``[T, C]``."""
        feats = np.ascontiguousarray(feats, dtype=np.float32)
        if feats.shape[1] != self.index.d:
            raise ValueError(
                f"features have {feats.shape[1]} channels; the index has {self.index.d}"
            )
        score, ix = self.index.search(feats, k=k)
        valid = ix >= 0
        weight = np.where(valid, np.square(1.0 / np.maximum(score, 1e-12)), 0.0)
        total = weight.sum(axis=1, keepdims=True)
        weight = np.where(total > 0, weight / np.where(total > 0, total, 1.0), 0.0)
        rows = self.rows[np.where(valid, ix, 0)]
        out = np.sum(rows * weight[:, :, None], axis=1)
        no_match = total[:, 0] == 0  # nothing found in the probed list: keep the input frame
        out[no_match] = feats[no_match]
        return out.astype(np.float32)
