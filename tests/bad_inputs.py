"""The bad-input corpus: each case is a user mistake run through a real script.

A case names the script, the kind of mistake, the arguments, the exit code and a piece of the
one-line message it must end with, and what must (not) be on disk afterwards. ``tests/
test_bad_inputs.py`` runs every case in-process through :func:`common.cli.run_main` (what each
script's ``__main__`` calls; fast) and, under ``-m slow``, as real subprocesses; the slow run can
also write the table of results (``BAD_INPUT_TABLE=path``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

# script → module whose main() it runs
SCRIPTS = {
    "inference_main.py": "inference.cli",
    "compress_model.py": "compress_model",
    "inference.merge": "inference.merge",
    "train.py": "train",
    "resample.py": "preprocess.resample",
    "preprocess_flist_config.py": "preprocess.flist_config",
    "preprocess_hubert_f0.py": "preprocess.features",
    "cluster/train_cluster.py": "cluster.train_cluster",
    "train_index.py": "train_index",
}


@dataclass
class Case:
    kind: str
    script: str
    where: str  # which work folder: "infer", "train", "raw", "feat"
    args: list
    rc: int
    says: str  # must appear in the last stderr line (rc != 0) or in stderr (rc == 0)
    setup: Callable[[Path], None] | None = None
    check: Callable[[Path, str], None] | None = None  # extra checks of outputs (gets stderr)
    unchanged: bool = True  # for rc != 0: no file in the work folder created or changed
    extra_lines: list[str] = field(default_factory=list)  # more stderr lines that must appear

    @property
    def id(self) -> str:
        return f"{self.script}:{self.kind}"


# ---------------------------------------------------------------------------------------------
# bad files
# ---------------------------------------------------------------------------------------------
class Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def write_bad_audio(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "junk.wav").write_bytes(b"RIFF....not audio at all" * 10)
    nan = np.full(44100, np.nan, np.float32)
    sf.write(folder / "nan.wav", nan, 44100, subtype="FLOAT")


def tone(seconds: float, sr: int = 44100, f: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * f * t) * (1 + 0.1 * np.sin(2 * np.pi * 3 * t))).astype(
        np.float32
    )


def truncate(path: Path, keep: float = 0.5) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])


def fake_discriminator(path: Path) -> None:
    """A small file with a MultiPeriodDiscriminator's key names (what a D_*.pth holds)."""
    model = {f"discs.{i}.convs.0.weight": torch.zeros(4, 1, 5, 1) for i in range(6)}
    model.update({f"discs.{i}.conv_post.weight": torch.zeros(1, 4, 3, 1) for i in range(6)})
    torch.save({"model": model, "iteration": 1, "optimizer": None, "learning_rate": 1e-4}, path)


def edit_config(src: Path, dst: Path, fn) -> None:
    cfg = json.loads(src.read_text())
    fn(cfg)
    dst.write_text(json.dumps(cfg))


# ---------------------------------------------------------------------------------------------
# work folders
# ---------------------------------------------------------------------------------------------
def make_infer_folder(root: Path) -> None:
    """tests/infer_fixtures' folder + a checkpoint and cluster model of another config + bad
    checkpoints and configs."""
    from common.atomic import torch_save
    from tests.infer_fixtures import infer_config, make_workdir, write_random_checkpoint
    from training.synthetic import tiny_config

    make_workdir(root)
    bad = root / "bad"
    bad.mkdir()
    other = tiny_config({"alto": 0, "bass": 1}, ssl_dim=32)
    (bad / "other_config.json").write_text(json.dumps(other))
    write_random_checkpoint(other, bad / "G_other.pth")
    fake_discriminator(bad / "D_1.pth")
    (bad / "junk.pth").write_bytes(b"PK\x03\x04 not really a zip" * 20)
    torch.save({"model": {}, "x": Evil()}, bad / "evil.pth")
    torch_save({"alto": {"n_features_in_": 32, "_n_threads": 1,
                         "cluster_centers_": np.zeros((4, 32), np.float32)}},
               bad / "kmeans_other.pt")  # fmt: skip
    good = root / "logs" / "44k" / "config.json"
    (bad / "not_json.json").write_text('{"train": {,}')
    edit_config(good, bad / "n_spk_0.json", lambda c: c["model"].update(n_speakers=0))
    edit_config(good, bad / "hop.json", lambda c: c["model"].update(upsample_rates=[8, 8, 2, 2]))
    edit_config(good, bad / "no_model.json", lambda c: c.pop("model"))
    edit_config(good, bad / "type.json", lambda c: c["model"].update(hidden_channels="16"))
    edit_config(good, bad / "spk_id.json", lambda c: c["spk"].update(tenor=7))
    edit_config(good, bad / "lr0.json", lambda c: c["train"].update(learning_rate=0))
    (root / "raw" / "a_folder.wav").mkdir()
    write_bad_audio(root / "raw")
    # features for clustering / indexing: good ones plus bad ones
    cfg = infer_config()
    del cfg
    feat = root / "dataset" / "44k"
    torch_save(torch.full((1, 8, 40), float("nan")), feat / "alto" / "zz_nan.wav.soft.pt")
    torch_save(torch.zeros(1, 16, 40), feat / "bass" / "zz_wide.wav.soft.pt")
    (feat / "bass" / "zz_junk.wav.soft.pt").write_bytes(b"junk")


def make_train_folder(root: Path) -> None:
    """A tiny training set + config, and logs/44k holding checkpoints of another config."""
    from tests.infer_fixtures import infer_config, write_random_checkpoint
    from training.synthetic import tiny_config, write_training_set

    info = write_training_set(root, n_speakers=2, files_per_speaker=2, duration=0.6, ssl_dim=32)
    cfg = tiny_config(info["spk"], ssl_dim=32)
    (root / "configs").mkdir()
    (root / "configs" / "config.json").write_text(json.dumps(cfg))
    logs = root / "logs" / "44k"
    logs.mkdir(parents=True)
    write_random_checkpoint(infer_config(), logs / "G_5.pth")  # another config (ssl_dim 8)
    fake_discriminator(logs / "D_5.pth")
    (logs / "config.json").write_text(json.dumps(cfg))
    asd = root / "logs" / "dg"
    asd.mkdir()
    fake_discriminator(asd / "G_5.pth")  # a D saved under a G name
    fake_discriminator(asd / "D_5.pth")
    edit_config(root / "configs" / "config.json", root / "configs" / "lr0.json",
                lambda c: c["train"].update(learning_rate=0))  # fmt: skip


def make_raw_folder(root: Path) -> None:
    """dataset_raw/ with good, colliding, truncated and bad files."""
    spk = root / "dataset_raw" / "alto"
    spk.mkdir(parents=True)
    sf.write(spk / "good.wav", tone(1.0), 44100)
    sf.write(spk / "a.wav", tone(1.0, f=200), 44100)
    sf.write(spk / "a.flac", tone(1.0, f=300), 48000)
    sf.write(spk / "A.ogg", tone(1.0, f=400), 22050)
    sf.write(spk / "cut.wav", tone(2.0), 44100, subtype="PCM_16")
    truncate(spk / "cut.wav")
    sf.write(spk / "cut2.flac", tone(2.0), 44100)
    truncate(spk / "cut2.flac", 0.6)
    write_bad_audio(spk)
    sf.write(spk / "silent.wav", np.zeros(44100, np.float32), 44100)
    sf.write(spk / "short.wav", tone(0.1), 44100)
    (root / "empty_raw").mkdir()


def make_feature_folder(root: Path) -> None:
    """A work folder for preprocess_hubert_f0.py: the tiny hubert-soft of the inference fixtures,
    its config, and dataset/44k with two speakers."""
    from common.synthetic import DEMO_SINGERS, write_dataset
    from tests.infer_fixtures import infer_config, write_pretrain

    write_pretrain(root / "pretrain")
    write_dataset(root / "dataset" / "44k", DEMO_SINGERS, files_per_singer=1, duration=1.0)
    for p in (root / "dataset" / "44k").rglob("*.f0.csv"):
        p.unlink()
    (root / "configs").mkdir()
    cfg = infer_config()
    (root / "configs" / "config.json").write_text(json.dumps(cfg))
    edit_config(root / "configs" / "config.json", root / "configs" / "n_spk_0.json",
                lambda c: c["model"].update(n_speakers=0))  # fmt: skip
    import yaml

    d = yaml.safe_load((Path(__file__).parent.parent / "configs_template" /
                        "diffusion_template.yaml").read_text())  # fmt: skip
    d["data"]["encoder"] = "vec768l12"  # config.json says hubertsoft
    (root / "configs" / "diffusion.yaml").write_text(yaml.safe_dump(d))


def _wavs(root: Path) -> list[Path]:
    return sorted((root / "dataset" / "44k").rglob("*.wav"))


def break_feature_cache(root: Path) -> None:
    """Run once for real, then damage three kinds of feature files."""
    wavs = _wavs(root)
    first, second = wavs[0], wavs[1]
    Path(f"{first}.soft.pt").write_bytes(b"\x80\x02corrupt")  # corrupt
    np.save(f"{second}.f0.npy", np.zeros((2, 7), np.float32))  # another file's (wrong length)
    spec = Path(str(second).replace(".wav", ".spec.pt"))
    if spec.exists():
        truncate(spec, 0.3)  # truncated


def check_feature_cache(root: Path, err: str) -> None:
    from common.features import feature_problem

    for w in _wavs(root):
        n = sf.info(w).frames
        for suffix in (".soft.pt", ".f0.npy"):
            assert feature_problem(f"{w}{suffix}", n, 8) is None, (w, suffix)
        assert feature_problem(str(w).replace(".wav", ".spec.pt"), n) is None


def reset_results(root: Path) -> None:
    shutil.rmtree(root / "results", ignore_errors=True)


def check_batch_outputs(root: Path, err: str) -> None:
    res = sorted(p.name for p in (root / "results").iterdir())
    assert res == ["low.ogg_0key_alto_sovits_pm.wav"], res
    for bad in ("raw/empty.wav", "raw/junk.wav", "raw/nan.wav", "raw/missing.wav"):
        assert any(ln.startswith(bad + ":") for ln in err.splitlines()), (bad, err)


def reset_resample(root: Path) -> None:
    shutil.rmtree(root / "dataset", ignore_errors=True)


def check_resample(root: Path, err: str) -> None:
    out = root / "dataset" / "44k" / "alto"
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert names == ["A_ogg.wav", "a.wav", "a_flac.wav", "cut.wav", "cut2.wav", "good.wav"], names
    for p in out.glob("*.wav"):
        info = sf.info(p)
        assert info.samplerate == 44100 and info.channels == 1 and info.subtype == "PCM_16"
    for bad in ("empty.wav", "junk.wav", "nan.wav", "silent.wav", "short.wav"):
        assert f"alto/{bad}" in err, (bad, err)
    assert "cut.wav: truncated" in err and "cut2.flac: truncated" in err


def check_features_for_cluster(root: Path, err: str) -> None:
    for name in ("zz_nan", "zz_wide", "zz_junk"):
        assert any(name in ln and "skipped" in ln for ln in err.splitlines()), (name, err)


# ---------------------------------------------------------------------------------------------
# the corpus
# ---------------------------------------------------------------------------------------------
G = "logs/44k/G_0.pth"
C = "logs/44k/config.json"
IM = "inference_main.py"
CONVERT = ["-n", "song.wav", "-s", "alto", "-wf", "wav"]


def cases() -> list[Case]:
    cs = [
        # checkpoints
        Case("ckpt of another config", IM, "infer", ["-m", "bad/G_other.pth", "-c", C, *CONVERT], 1, "does not fit the model built from logs/44k/config.json"),
        Case("D_*.pth given as G", IM, "infer", ["-m", "bad/D_1.pth", "-c", C, *CONVERT], 1, "discriminator checkpoint"),
        Case("ckpt junk bytes", IM, "infer", ["-m", "bad/junk.pth", "-c", C, *CONVERT], 1, "not a readable torch checkpoint"),
        Case("ckpt malicious pickle", IM, "infer", ["-m", "bad/evil.pth", "-c", C, *CONVERT], 1, "nothing from it was run"),
        Case("ckpt missing", IM, "infer", ["-m", "bad/nope.pth", "-c", C, *CONVERT], 1, "checkpoint file not found"),
        Case("kmeans of another config", IM, "infer", ["-m", G, "-c", C, *CONVERT, "-cr", "0.5", "-cm", "bad/kmeans_other.pt"], 1, "does not fit"),
        # configs
        Case("config not JSON", IM, "infer", ["-m", G, "-c", "bad/not_json.json", *CONVERT], 1, "not valid JSON"),
        Case("config n_speakers 0", IM, "infer", ["-m", G, "-c", "bad/n_spk_0.json", *CONVERT], 1, "model.n_speakers is 0"),
        Case("config hop != prod(upsample)", IM, "infer", ["-m", G, "-c", "bad/hop.json", *CONVERT], 1, "model.upsample_rates"),
        Case("config no model section", IM, "infer", ["-m", G, "-c", "bad/no_model.json", *CONVERT], 1, "model section is missing"),
        Case("config wrong type", IM, "infer", ["-m", G, "-c", "bad/type.json", *CONVERT], 1, "model.hidden_channels is '16'"),
        Case("config spk id >= n_speakers", IM, "infer", ["-m", G, "-c", "bad/spk_id.json", *CONVERT], 1, "spk.tenor is 7"),
        Case("config missing", IM, "infer", ["-m", G, "-c", "bad/none.json", *CONVERT], 1, "config file not found"),
        # flags
        Case("-cr out of range", IM, "infer", ["-m", G, "-c", C, *CONVERT, "-cr", "1.5"], 2, "-cr 1.5: out of range"),
        Case("-t out of range", IM, "infer", ["-m", G, "-c", C, *CONVERT, "-t", "100"], 2, "-t 100: out of range"),
        Case("-ns negative", IM, "infer", ["-m", G, "-c", C, *CONVERT, "-ns", "-1"], 2, "-ns -1.0: out of range"),
        Case("-lgr out of range", IM, "infer", ["-m", G, "-c", C, *CONVERT, "-lgr", "2"], 2, "-lgr 2.0: out of range"),
        Case("-lg longer than -cl", IM, "infer", ["-m", G, "-c", C, *CONVERT, "-cl", "1", "-lg", "2"], 2, "-lg 2.0: out of range"),
        Case("-f0p unknown", IM, "infer", ["-m", G, "-c", C, *CONVERT, "-f0p", "xyz"], 2, "-f0p xyz: unknown f0 predictor"),
        Case("-s unknown speaker", IM, "infer", ["-m", G, "-c", C, "-n", "song.wav", "-s", "nobody"], 1, "speaker 'nobody' is not in the speaker list"),
        # audio
        Case("input is a folder", IM, "infer", ["-m", G, "-c", C, "-n", "a_folder.wav", "-s", "alto"], 1, "nothing converted"),
        Case("-n batch with empty/junk/NaN/missing inputs", IM, "infer",
             ["-m", G, "-c", C, "-n", "empty.wav", "junk.wav", "nan.wav", "missing.wav", "low.ogg", "-s", "alto", "-wf", "wav"],
             3, "4 of 5 inputs failed", setup=reset_results, check=check_batch_outputs, unchanged=False),
        # compress / merge
        Case("ckpt of another config", "compress_model.py", "infer", ["-c", C, "-i", "bad/G_other.pth", "-o", "logs/44k/G_0.pth"], 1, "does not fit the model built from logs/44k/config.json"),
        Case("D_*.pth given as G", "compress_model.py", "infer", ["-c", C, "-i", "bad/D_1.pth"], 1, "discriminator checkpoint"),
        Case("config lr 0", "compress_model.py", "infer", ["-c", "bad/lr0.json", "-i", G], 1, "train.learning_rate is 0"),
        Case("ckpt of another config", "inference.merge", "infer", [G, "bad/G_other.pth", "-o", G], 1, "does not fit"),
        Case("D_*.pth given as G", "inference.merge", "infer", ["bad/D_1.pth", G, "-o", "merged.pth"], 1, "discriminator checkpoint"),
        Case("ckpt vs -c config", "inference.merge", "infer", ["bad/G_other.pth", "bad/G_other.pth", "-c", C, "-o", "merged.pth"], 1, "does not fit the model built from logs/44k/config.json"),
        Case("--rates count", "inference.merge", "infer", [G, G, "-r", "50", "-o", "merged.pth"], 2, "2 checkpoints but 1 rates"),
        # train
        Case("resume ckpt of another config", "train.py", "train", ["-c", "configs/config.json", "-m", "44k", "--max_steps", "1"], 1, "logs/44k/G_5.pth: does not fit the model built from configs/config.json"),
        Case("resume D_*.pth named G", "train.py", "train", ["-c", "configs/config.json", "-m", "dg", "--max_steps", "1"], 1, "discriminator checkpoint"),
        Case("config lr 0", "train.py", "train", ["-c", "configs/lr0.json", "-m", "new", "--max_steps", "1"], 1, "train.learning_rate is 0"),
        Case("config missing", "train.py", "train", ["-c", "configs/none.json", "-m", "new"], 1, "config file not found"),
        # data preparation
        Case("bad, colliding and truncated audio", "resample.py", "raw", ["--num_processes", "1"], 0, "resample: 6 done", setup=reset_resample, check=check_resample),
        Case("input folder missing", "resample.py", "raw", ["--in_dir", "nowhere"], 1, "nowhere: input folder not found"),
        Case("--sr2 0", "resample.py", "raw", ["--sr2", "0"], 2, "--sr2 0: out of range"),
        Case("empty dataset", "preprocess_flist_config.py", "raw", ["--source_dir", "empty_raw"], 1, "no speaker with at least 2 usable wav files"),
        Case("corrupt/foreign/truncated feature files", "preprocess_hubert_f0.py", "feat", ["-c", "configs/config.json", "--f0_predictor", "pm"], 0, "recomputing it", setup=break_feature_cache, check=check_feature_cache),
        Case("config n_speakers 0", "preprocess_hubert_f0.py", "feat", ["-c", "configs/n_spk_0.json", "--f0_predictor", "pm"], 1, "model.n_speakers is 0"),
        Case("diffusion.yaml encoder mismatch", "preprocess_hubert_f0.py", "feat", ["-c", "configs/config.json", "--f0_predictor", "pm", "--use_diff"], 1, "data.encoder is 'vec768l12' but model.speech_encoder"),
        Case("--f0_predictor unknown", "preprocess_hubert_f0.py", "feat", ["--f0_predictor", "xyz"], 2, "unknown f0 predictor"),
        Case("NaN/junk/other-width .soft.pt", "cluster/train_cluster.py", "infer", ["--dataset", "dataset/44k", "--output", "km_out", "--n_clusters", "4"], 0, "skipped (re-run preprocess_hubert_f0.py", check=check_features_for_cluster, unchanged=False),
        Case("--n_clusters 0", "cluster/train_cluster.py", "infer", ["--n_clusters", "0"], 2, "--n_clusters 0: out of range"),
        Case("NaN/junk/other-width .soft.pt", "train_index.py", "infer", ["--root_dir", "dataset/44k", "-c", C, "--output_dir", "idx_out"], 0, "skipped (re-run preprocess_hubert_f0.py", check=check_features_for_cluster, unchanged=False),
        Case("config spk id >= n_speakers", "train_index.py", "infer", ["-c", "bad/spk_id.json", "--output_dir", "idx_out2"], 1, "spk.tenor is 7"),
    ]  # fmt: skip
    return cs


KINDS = sorted({c.kind for c in cases()})
