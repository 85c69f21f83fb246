"""K-means cluster models and faiss retrieval indexes (cluster/, train_index.py; §2.6, §2.7, §14)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from cluster import ClusterModel, get_cluster_center_result, get_cluster_model
from cluster.feature_index import (
    FeatureIndexError,
    load_feature_index,
    save_feature_index,
    train_index,
)
from cluster.kmeans import KMeansTorch
from common.checkpoint import safe_load
from tests.conftest import ROOT, run_script


def blobs(n_per=60, k=5, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 10, (k, dim)).astype(np.float32)
    x = np.concatenate([c + rng.normal(0, 0.1, (n_per, dim)) for c in centres]).astype(np.float32)
    return x, centres


def write_features(root, speakers=("alto", "bass"), files=3, frames=40, dim=8, seed=0):
    """``root/<spk>/<spk>_<i>.wav.soft.pt`` with ``[1, dim, frames]`` random features."""
    g = torch.Generator().manual_seed(seed)
    for s, spk in enumerate(speakers):
        d = root / spk
        d.mkdir(parents=True, exist_ok=True)
        for i in range(files):
            torch.save(
                torch.randn(1, dim, frames, generator=g) + 3 * s, d / f"{spk}_{i}.wav.soft.pt"
            )
    return root


def test_nearest_centre_matches_sklearn():
    from sklearn.cluster import KMeans

    x, _ = blobs()
    km = KMeans(n_clusters=7, n_init=1, random_state=0).fit(x)
    cm = ClusterModel(km.cluster_centers_)
    q = np.random.default_rng(1).normal(0, 10, (333, 8)).astype(np.float32)
    np.testing.assert_array_equal(cm.predict(q), km.predict(q))
    np.testing.assert_array_equal(cm.centers_of(q), km.cluster_centers_[km.predict(q)])
    with pytest.raises(ValueError, match="expects"):
        cm.predict(q[:, :4])


def test_torch_kmeans_finds_blobs_and_is_deterministic():
    x, centres = blobs()
    a = KMeansTorch(5, seed=3, device="cpu").fit(x)
    b = KMeansTorch(5, seed=3, device="cpu").fit(x)
    torch.testing.assert_close(a.cluster_centers_, b.cluster_centers_, rtol=0, atol=0)
    found = a.cluster_centers_.numpy()
    d = np.linalg.norm(found[:, None] - centres[None], axis=-1).min(1)
    # every found centre is one of the true ones (random init can merge two blobs only rarely;
    # with these seeds it does not)
    assert (d < 0.1).all()
    with pytest.raises(ValueError, match="fewer"):
        KMeansTorch(500).fit(x[:10])


def test_reference_layout_file_loads_without_sklearn_objects(tmp_path):
    """A kmeans_10000.pt exactly as the reference writes it (plain torch.save of numpy arrays)."""
    x, _ = blobs()
    centres = x[::30].copy()
    ref = {"alto": {"n_features_in_": 8, "_n_threads": 2, "cluster_centers_": centres}}
    torch.save(ref, tmp_path / "kmeans_10000.pt")
    model = get_cluster_model(tmp_path / "kmeans_10000.pt")
    out = get_cluster_center_result(model, x[:5] + 0.01, "alto")
    assert out.shape == (5, 8) and np.isin(out, centres).all()
    with pytest.raises(KeyError, match="not in the cluster model"):
        get_cluster_center_result(model, x[:5], "bass")


def _run(cmd, cwd, plain_script):
    """``plain_script``: as a user runs it, ``python cluster/train_cluster.py`` with no PYTHONPATH."""
    if not plain_script:
        return run_script(cmd, cwd=cwd, check=False)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, *map(str, cmd)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip


@pytest.mark.parametrize("how", ["script", "module", "gpu", "minibatch"])
def test_train_cluster_cli(tmp_path, how):
    ds = write_features(tmp_path / "dataset" / "44k")
    (ds / "empty_dir_is_skipped_with_error").mkdir()
    out = tmp_path / "logs"
    args = ["--dataset", ds, "--output", out]
    if how == "module":
        cmd = ["-m", "cluster.train_cluster", *args]
    else:
        cmd = [ROOT / "cluster" / "train_cluster.py", *args]
        cmd += (
            ["--gpu"]
            if how == "gpu"
            else ["--minibatch", "--n_clusters", "50"]
            if how == "minibatch"
            else []
        )
    proc = _run(cmd, tmp_path, plain_script=how == "script")
    assert proc.returncode == 1 and "no *.soft.pt" in proc.stderr  # the empty speaker folder
    (ds / "empty_dir_is_skipped_with_error").rmdir()
    proc = _run(cmd, tmp_path, plain_script=how == "script")
    assert proc.returncode == 0, proc.stderr
    name = "kmeans_50.pt" if how == "minibatch" else "kmeans_10000.pt"
    ckpt = safe_load(out / name)
    assert set(ckpt) == {"alto", "bass"}
    for entry in ckpt.values():
        assert set(entry) == {"n_features_in_", "_n_threads", "cluster_centers_"}
        c = entry["cluster_centers_"]
        assert isinstance(c, np.ndarray) and c.dtype == np.float32 and c.shape[1] == 8
        assert c.shape[0] == (50 if how == "minibatch" else 120)  # 120 frames < 10000: clamped
    if how != "minibatch":
        assert "fewer than 10000 clusters" in proc.stderr + proc.stdout
    if how == "gpu":
        assert ckpt["alto"]["_n_threads"] == 4
    get_cluster_model(out / name)  # loads for inference


def test_feature_index_build_save_load_retrieve(tmp_path):
    write_features(tmp_path, speakers=("alto",), files=2, frames=60)
    index = train_index(tmp_path / "alto", seed=0)
    assert index.ntotal == 120 and index.nprobe == 1
    save_feature_index({0: index, 3: index}, tmp_path / "feature_and_index.npz")
    with np.load(tmp_path / "feature_and_index.npz", allow_pickle=False) as z:  # no pickle inside
        assert list(z["speaker_ids"]) == [0, 3]
    loaded = load_feature_index(tmp_path / "feature_and_index.npz")
    assert set(loaded) == {0, 3} and loaded[3].ntotal == 120
    rows = loaded[0].rows
    q = rows[:10]  # exact matches: score 0 must not give NaN (the reference divided by 0)
    out = loaded[0].retrieve(q)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, q, atol=1e-4)
    out = loaded[0].retrieve(rows[:10] + 0.05)
    assert out.shape == (10, 8) and np.isfinite(out).all()


def test_tiny_speaker_gets_at_least_one_ivf_list(tmp_path):
    write_features(tmp_path, speakers=("s",), files=1, frames=20)  # 20 rows: 20 // 39 == 0 lists
    assert train_index(tmp_path / "s").ntotal == 20


def test_reference_pickle_is_refused_with_rebuild_hint(tmp_path):
    import faiss

    x, _ = blobs()
    idx = faiss.index_factory(8, "IVF4,Flat")
    idx.train(x)
    idx.add(x)
    with open(tmp_path / "feature_and_index.pkl", "wb") as f:
        pickle.dump({0: idx, 1: idx}, f)
    with pytest.raises(FeatureIndexError, match="train_index.py") as e:
        load_feature_index(tmp_path / "feature_and_index.pkl")
    assert "not unpickled" in str(e.value)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_malicious_pickle_is_refused_with_rebuild_hint(tmp_path):
    with open(tmp_path / "feature_and_index.pkl", "wb") as f:
        pickle.dump({0: _Evil()}, f)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with pytest.raises(FeatureIndexError, match="train_index.py") as e:
            load_feature_index("feature_and_index.pkl")
    finally:
        os.chdir(cwd)
    assert "not unpickled" in str(e.value) and not (tmp_path / "PWNED").exists()
    (tmp_path / "junk.npz").write_bytes(b"not an index")
    with pytest.raises(FeatureIndexError, match="train_index.py"):
        load_feature_index(tmp_path / "junk.npz")


def test_train_index_cli(tmp_path):
    write_features(tmp_path / "dataset" / "44k")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "config.json").write_text(json.dumps({"spk": {"alto": 0, "bass": 1}}))
    run_script([ROOT / "train_index.py", "--root_dir", "dataset/44k", "-c", "configs/config.json",
                "--output_dir", "logs/44k", "--seed", "0"], cwd=tmp_path)  # fmt: skip
    loaded = load_feature_index(tmp_path / "logs" / "44k" / "feature_and_index.npz")
    assert set(loaded) == {0, 1} and loaded[1].ntotal == 120
