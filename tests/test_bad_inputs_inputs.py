"""Inputs that used to give a silent wrong result (issue 20, item 5): each now gets one line and an
exit code, or a documented clamp. Flags of inference_main.py, eval.py and the motion scripts
(import_llf.py, svc2ue.py, record.py), plus record.py's frame counter wrap, out-of-range values
and a second device over real loopback UDP.

Most cases run each script's ``main`` through :func:`common.cli.run_main` (what ``__main__`` does);
``test_scripts_as_subprocesses`` runs one case per script as a real process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from common.cli import run_main
from motion import livelink
from motion.channels import N_VALUES, NAMES
from tests.conftest import PYTHON, ROOT, run_script


def _csv(
    path: Path, cell: str = "0.5", timecode: str = "00:00:01:{k:02d}.0", rows: int = 10
) -> Path:
    lines = ["Timecode,BlendshapeCount," + ",".join(NAMES)]
    for k in range(rows):
        vals = ["0.25"] * N_VALUES
        if k == 1:
            vals[NAMES.index("JawOpen")] = cell
        lines.append(timecode.format(k=k) + ",61," + ",".join(vals))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def files(tmp_path):
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(44100, np.float32), 44100)
    good = np.full((20, N_VALUES), 0.3, np.float32)
    np.save(tmp_path / "good.npy", good)
    nan = good.copy()
    nan[7, 17] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "empty.npy", np.zeros((0, N_VALUES), np.float32))
    return {"wav": wav, "dir": tmp_path, "csv": _csv(tmp_path / "t.csv")}


def _main(script: str):
    import importlib

    return importlib.import_module(script).main


# (script module, args (with {dir}/{wav}/{csv} filled in), exit code, start of the one line)
CASES = [
    (
        "inference.cli",
        ["-n", "x.wav", "-cl", "0.01"],
        2,
        "-cl 0.01: out of range; a forced clip is 0",
    ),
    ("inference.cli", ["-n", "x.wav", "-cl", "nan"], 2, "-cl nan: out of range"),
    (
        "motion.import_llf",
        ["{csv}", "--audio", "{wav}", "--fps", "-60"],
        2,
        "--fps -60.0: out of range",
    ),
    (
        "motion.import_llf",
        ["{csv}", "--audio", "{wav}", "--fps", "nan"],
        2,
        "--fps nan: out of range",
    ),
    (
        "motion.import_llf",
        ["{csv}", "--audio", "{wav}", "--fps", "0"],
        2,
        "--fps 0.0: out of range",
    ),
    (
        "motion.import_llf",
        ["{csv}", "--audio", "{wav}", "--offset_ms", "nan"],
        2,
        "--offset_ms nan: out of range",
    ),
    (
        "motion.import_llf",
        ["{csv}", "--audio", "{wav}", "--offset_ms", "1e300"],
        2,
        "--offset_ms 1e+300: out of range",
    ),
    (
        "motion.import_llf",
        ["{dir}/big.csv", "--audio", "{wav}"],
        1,
        "{dir}/big.csv: row 3, column JawOpen: '1e39' is not a finite 32-bit number",
    ),
    (
        "motion.import_llf",
        ["{dir}/nancell.csv", "--audio", "{wav}"],
        1,
        "{dir}/nancell.csv: row 3, column JawOpen: 'nan' is not a finite 32-bit number",
    ),
    (
        "motion.import_llf",
        ["{dir}/nantc.csv", "--audio", "{wav}"],
        1,
        "{dir}/nantc.csv: no readable data rows",
    ),
    ("motion.svc2ue", ["{dir}/nan.npy"], 1, "error: {dir}/nan.npy: 1 frame(s) hold NaN"),
    ("motion.svc2ue", ["{dir}/empty.npy"], 1, "error: {dir}/empty.npy: the track has no frames"),
    ("motion.svc2ue", ["{dir}/good.npy", "--rate", "-60"], 2, "--rate -60.0: out of range"),
    ("motion.svc2ue", ["{dir}/good.npy", "--rate", "nan"], 2, "--rate nan: out of range"),
    ("motion.svc2ue", ["{dir}/good.npy", "--loop", "-1"], 2, "--loop -1: out of range"),
    (
        "motion.svc2ue",
        ["{dir}/good.npy", "--latency-ms", "inf"],
        2,
        "--latency-ms inf: out of range",
    ),
    (
        "motion.svc2ue",
        ["{dir}/good.npy", "--target", "127.0.0.1:99999"],
        2,
        "--target '127.0.0.1:99999': port 99999 is out of range",
    ),
    (
        "motion.record",
        ["--listen", "127.0.0.1:99999", "--wav", "{wav}", "--out", "{dir}/take"],
        2,
        "--listen '127.0.0.1:99999': port 99999 is out of range",
    ),
    (
        "motion.record",
        ["--duration", "-5", "--wav", "{wav}", "--out", "{dir}/take"],
        2,
        "--duration -5.0: out of range",
    ),
    (
        "motion.record",
        ["--duration", "nan", "--wav", "{wav}", "--out", "{dir}/take"],
        2,
        "--duration nan: out of range",
    ),
]


@pytest.mark.parametrize(
    "script, args, rc, says", CASES, ids=[f"{c[0]}:{' '.join(c[1][-2:])}" for c in CASES]
)
def test_bad_flags_and_tracks_get_one_line(files, capfd, monkeypatch, script, args, rc, says):
    d = files["dir"]
    _csv(d / "big.csv", "1e39")
    _csv(d / "nancell.csv", "nan")
    _csv(d / "nantc.csv", timecode="00:00:01:nan")
    monkeypatch.chdir(d)
    fill = {"dir": str(d), "wav": str(files["wav"]), "csv": str(files["csv"])}
    before = sorted(p.name for p in d.iterdir())
    code = run_main(_main(script), [a.format(**fill) for a in args])
    err = capfd.readouterr().err.strip().splitlines()
    assert code == rc, err
    assert err and err[-1].startswith(says.format(**fill)), err
    assert "Traceback" not in "\n".join(err)
    assert sorted(p.name for p in d.iterdir()) == before  # nothing written


def test_scripts_as_subprocesses(files):
    """``python <script>`` goes through run_main: the same line and exit code, no traceback."""
    d, wav = files["dir"], files["wav"]
    for args, rc, says in (
        (
            [ROOT / "motion/import_llf.py", files["csv"], "--audio", wav, "--fps", "-60"],
            2,
            "--fps -60.0",
        ),
        ([ROOT / "motion/svc2ue.py", d / "good.npy", "--loop", "-1"], 2, "--loop -1"),
        (
            [ROOT / "motion/record.py", "--listen", "127.0.0.1:99999"],
            2,
            "--listen '127.0.0.1:99999'",
        ),
        ([ROOT / "inference_main.py", "-n", "x.wav", "-cl", "0.01"], 2, "-cl 0.01: out of range"),
    ):
        proc = run_script(args, cwd=d, check=False, timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == rc and lines[-1].startswith(says), (args, proc.stderr)
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("t", ["nan", "inf", "1e9"])
def test_eval_transpose_must_be_finite_semitones(tmp_path, t):
    proc = run_script([ROOT / "eval.py", "-o", "a.flac", "-s", "b.wav", "-t", t, "--out", tmp_path / "e"],
                      cwd=tmp_path, check=False, timeout=120)  # fmt: skip
    assert (
        proc.returncode == 2 and "-t/--transpose" in proc.stderr and "out of range" in proc.stderr
    )
    assert not (tmp_path / "e").exists()


def test_eval_manifest_transpose_nan_is_an_item_error():
    from quality.evaluate import ItemError, check_item

    with pytest.raises(ItemError, match="transpose nan is out of range"):
        check_item({"output": "o.wav", "source": "s.wav", "transpose": float("nan")})


def test_import_llf_keeps_good_files_and_skips_a_bad_timecode(files, tmp_path):
    from motion.import_llf import read_llf_csv

    csv = _csv(tmp_path / "x.csv", rows=12)
    lines = csv.read_text().splitlines()
    lines[4] = "00:00:01:nan," + lines[4].split(",", 1)[1]
    csv.write_text("\n".join(lines) + "\n")
    values, secs, info = read_llf_csv(csv)
    assert len(values) == 11 and info["unreadable_rows"] == 1 and np.isfinite(secs).all()


def test_frame_unwrapper_and_encode_wrap():
    from motion.record import FrameUnwrapper

    u = FrameUnwrapper()
    top = 2**31 - 1
    raw = [top - 2, top - 1, top, -(2**31), -(2**31) + 1, top, -(2**31) + 3]  # a late one, a gap
    assert [u(r) for r in raw] == [top - 2, top - 1, top, top + 1, top + 2, top, top + 4]
    p = livelink.decode(livelink.encode(np.zeros(61), 2**31 + 5))
    assert p.frame == -(2**31) + 5


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_record_wrapping_counter_second_device_and_out_of_range_values(tmp_path):
    """Frames near 2^31 wrap: no "two billion dropped"; a second sender is ignored and counted;
    a packet with 1e30 is malformed, one with 1.02 is clamped to 1."""
    wav = tmp_path / "cue.wav"
    sf.write(wav, np.zeros(44100 * 2, np.float32), 44100)
    port = _free_udp_port()
    out = tmp_path / "take"
    proc = subprocess.Popen(
        [PYTHON, str(ROOT / "motion" / "record.py"), "--listen", f"127.0.0.1:{port}", "--wav", str(wav),
         "--out", str(out), "--duration", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    for _ in range(20):
        if proc.stdout.readline().startswith("audio start"):
            break
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    n, first = 40, 2**31 - 20
    rng = np.random.default_rng(0)
    sent = []
    for i in range(n):
        vals = rng.uniform(0, 1, N_VALUES).astype(np.float32)
        if i == 5:
            vals[17] = 1.02  # within the slack: clamped
        sock.sendto(
            livelink.encode(vals, first + i, 0.0, (60, 1), "iPhoneA", "Face"), ("127.0.0.1", port)
        )
        sent.append(np.minimum(vals, 1.0) if i == 5 else vals)
        if i % 4 == 0:  # a second phone on the same port, its own counter
            other = livelink.encode(
                rng.uniform(0, 1, N_VALUES), 500 + i, 0.0, (60, 1), "iPhoneB", "Face"
            )
            sock.sendto(other, ("127.0.0.1", port))
        if i == 10:
            wild = np.full(N_VALUES, 0.5)
            wild[3] = 1e30
            sock.sendto(livelink.encode(wild, first + 1000, 0.0, (60, 1), "iPhoneA", "Face"),
                        ("127.0.0.1", port))  # fmt: skip
        time.sleep(1 / 120)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "warning: packets from a second device (iPhoneB/Face) are ignored" in stderr
    summary = json.loads((out / "take.json").read_text())["summary"]
    assert summary["frames"] == n and summary["dropped"] == 0, summary
    assert summary["other_devices"] == {"iPhoneB/Face": 10}
    assert summary["malformed_by_reason"] == {"blendshape values outside 0..1": 1}
    with np.load(out / "frames.npz") as z:
        np.testing.assert_array_equal(z["frame"], np.arange(first, first + n))
        np.testing.assert_array_equal(z["values"], np.stack(sent))
    assert json.loads((out / "take.json").read_text())["device_id"] == "iPhoneA"


@pytest.mark.parametrize(
    "mix, says",
    [
        (
            "spk_mix_map = {0: [[0, 1e10, 1, 1], [1e10, 1, 1, 1]], 1: [[0, 1, 0, 1]]}",
            "times are fractions",
        ),
        ("spk_mix_map = {0: [[[0], 1, 1, 1]], 1: [[0, 1, 0, 1]]}", "four finite numbers"),
        ("spk_mix_map = {0: " + "[" * 5000 + "]" * 5000 + "}", "brackets nested 5001 deep"),
        ("spk_mix_map = {0: 1" + "+1" * 30000 + "}", "too deeply nested to read"),
    ],
)
def test_inference_main_spkmix_shapes_are_checked(tmp_path, capfd, monkeypatch, mix, says):
    """-usm reads spkmix.py as data; a malformed one is one line (was a TypeError / a 10 TB
    allocation / RecursionError), before any model is loaded."""
    (tmp_path / "spkmix.py").write_text(mix)
    monkeypatch.chdir(tmp_path)
    code = run_main(_main("inference.cli"), ["-n", "x.wav", "-usm"])
    err = capfd.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("spkmix.py: ") and says in err[-1], err
