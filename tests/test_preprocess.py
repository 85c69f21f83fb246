"""resample.py and preprocess_flist_config.py, run as a user would (subprocess)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import yaml

from common.synthetic import BAD_INPUTS, DEMO_SINGERS, Singer, write_bad_inputs, write_dataset
from tests.conftest import ROOT, run_script

SPACED = "bass singer"  # a speaker folder name with a space in it


@pytest.fixture(scope="module")
def raw_dataset(tmp_path_factory):
    """Two speakers (one with a space in its name); the bad-input set sits in the second one."""
    root = tmp_path_factory.mktemp("ds")
    singers = (DEMO_SINGERS[0], Singer(SPACED, 85.0, 220.0))
    write_dataset(root / "dataset_raw", singers=singers, files_per_singer=3, duration=1.5)
    for p in (root / "dataset_raw").rglob("*.f0.csv"):
        p.unlink()
    write_bad_inputs(root / "dataset_raw", speaker=SPACED)
    return root


def test_resample_then_config(raw_dataset):
    root = raw_dataset
    proc = run_script([ROOT / "resample.py", "--num_processes", "2"], cwd=root)
    out = proc.stdout
    good = [n for n, why in BAD_INPUTS.items() if why is None]
    bad = {n: why for n, why in BAD_INPUTS.items() if why is not None}
    for name, why in bad.items():
        line = next((ln for ln in out.splitlines() if name in ln), None)
        assert line is not None and why in line, f"{name} not reported with '{why}':\n{out}"
    wavs = sorted((root / "dataset" / "44k").rglob("*.wav"))
    assert len(wavs) == 6 + len(good)
    for w in wavs:
        info = sf.info(w)
        assert (info.samplerate, info.channels, info.subtype) == (44100, 1, "PCM_16"), w
        data, _ = sf.read(w, dtype="int16")
        assert np.abs(data.astype(int)).max() >= 32000  # peak-normalised
    assert (root / "dataset" / "44k" / SPACED / "low_rate_8k.wav").exists()

    # A second run does nothing and still succeeds.
    again = run_script([ROOT / "resample.py", "--num_processes", "1"], cwd=root)
    assert "0 done" in again.stdout and f"{6 + len(good)} already up to date" in again.stdout

    proc = run_script(
        [ROOT / "preprocess_flist_config.py", "--speech_encoder", "vec256l9"], cwd=root
    )
    cfg = json.loads((root / "configs" / "config.json").read_text())
    assert cfg["spk"] == {"alto": 0, SPACED: 1}
    assert cfg["model"]["n_speakers"] == 2 and isinstance(cfg["model"]["n_speakers"], int)
    assert (cfg["model"]["ssl_dim"], cfg["model"]["gin_channels"]) == (256, 256)
    assert cfg["model"]["filter_channels"] == 768 and cfg["model"]["speech_encoder"] == "vec256l9"
    template = json.loads((ROOT / "configs_template" / "config_template.json").read_text())
    assert set(cfg) == set(template)
    for section in ("train", "data", "model"):
        assert set(cfg[section]) == set(template[section])
    train = (root / "filelists" / "train.txt").read_text().splitlines()
    val = (root / "filelists" / "val.txt").read_text().splitlines()
    assert len(train) + len(val) == 6 + len(good) and not set(train) & set(val)
    assert all(p.startswith("./dataset/44k/") and p.endswith(".wav") for p in train + val)
    assert {p.split("/")[3] for p in val} == {"alto", SPACED}
    diff = yaml.safe_load((root / "configs" / "diffusion.yaml").read_text())
    assert diff["model"]["n_spk"] == 2 and diff["data"]["encoder_out_channels"] == 256
    assert diff["spk"] == cfg["spk"] and diff["data"]["encoder"] == "vec256l9"


@pytest.mark.parametrize(
    "encoder,dims",
    [
        ("vec768l12", (768, 768, 768)),
        ("hubertsoft", (256, 256, 768)),
        ("whisper-ppg", (1024, 1024, 1024)),
        ("whisper-ppg-large", (1280, 1280, 1280)),
    ],
)
def test_config_dimension_table_and_flags(tmp_path, encoder, dims):
    for spk in ("b", "a"):
        write_dataset(
            tmp_path / "dataset" / "44k",
            singers=(Singer(spk, 150, 300),),
            files_per_singer=2,
            duration=0.5,
        )
    run_script(
        [ROOT / "preprocess_flist_config.py", "--speech_encoder", encoder, "--vol_aug", "--tiny"],
        cwd=tmp_path,
    )
    cfg = json.loads((tmp_path / "configs" / "config.json").read_text())
    m = cfg["model"]
    assert (m["ssl_dim"], m["gin_channels"]) == dims[:2]
    assert m["filter_channels"] == 512  # --tiny wins over the table
    assert m["vol_embedding"] is True and cfg["train"]["vol_aug"] is True
    assert m["upsample_initial_channel"] == 400 and m["use_depthwise_conv"] is True
    assert cfg["spk"] == {"a": 0, "b": 1}  # sorted names


def test_config_messages(tmp_path):
    (tmp_path / "dataset" / "44k").mkdir(parents=True)
    proc = run_script([ROOT / "preprocess_flist_config.py"], cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "no speaker" in proc.stderr  # errors go to stderr
    write_dataset(
        tmp_path / "dataset" / "44k",
        singers=(Singer("ok", 150, 300),),
        files_per_singer=3,
        duration=0.5,
    )
    write_dataset(
        tmp_path / "dataset" / "44k",
        singers=(Singer("lonely", 150, 300),),
        files_per_singer=1,
        duration=0.5,
    )
    short = tmp_path / "dataset" / "44k" / "ok" / "tiny.wav"
    sf.write(short, np.zeros(4410, np.float32), 44100)
    proc = run_script([ROOT / "preprocess_flist_config.py"], cwd=tmp_path)
    assert "speaker 'lonely' has 1 usable file" in proc.stdout
    assert "tiny.wav: shorter than 0.3 s" in proc.stdout
    cfg = json.loads((tmp_path / "configs" / "config.json").read_text())
    assert cfg["spk"] == {"ok": 0}
    lists = (tmp_path / "filelists" / "train.txt").read_text() + (
        tmp_path / "filelists" / "val.txt"
    ).read_text()
    assert "tiny.wav" not in lists and len(lists.splitlines()) == 3


def test_resample_killed_part_way_then_resumed(tmp_path):
    """SIGKILL resample.py mid-run: no half-written output; a re-run completes every file."""
    n_files = 40
    write_dataset(
        tmp_path / "dataset_raw", singers=DEMO_SINGERS, files_per_singer=n_files // 2, duration=2.5
    )
    out_dir = tmp_path / "dataset" / "44k"
    cmd = [sys.executable, str(ROOT / "resample.py"), "--num_processes", "2"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out_dir.rglob("*.wav"))) < 3:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    written = list(out_dir.rglob("*.wav"))
    assert 0 < len(written) < n_files, f"the kill should land part way ({len(written)} written)"
    for w in written:  # every output that exists is complete and readable
        data, sr = sf.read(w)
        assert sr == 44100 and len(data) > 0.3 * 44100
    run_script([ROOT / "resample.py", "--num_processes", "2"], cwd=tmp_path)
    final = sorted(out_dir.rglob("*"))
    assert len([p for p in final if p.suffix == ".wav"]) == n_files
    assert not [p for p in final if p.name.endswith(".tmp")]
    for w in final:
        if w.is_file():
            assert len(sf.read(w)[0]) > 0.3 * 44100


def test_resample_exit_code_when_nothing_usable(tmp_path):
    write_bad_inputs(tmp_path / "dataset_raw", speaker="x")
    for name, why in BAD_INPUTS.items():
        if why is None:
            (tmp_path / "dataset_raw" / "x" / name).unlink()
    proc = run_script([ROOT / "resample.py", "--num_processes", "1"], cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "0 done" in proc.stdout
    proc = run_script([ROOT / "resample.py", "--in_dir", "nowhere"], cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "nowhere" in proc.stderr
