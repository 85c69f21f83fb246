"""Live Link v6 packets and record.py over a real loopback UDP socket."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import numpy as np
import pytest
import soundfile as sf

from motion import livelink
from motion.channels import N_VALUES, NAMES
from motion.take import load_take
from tests.conftest import PYTHON, ROOT


def test_packet_round_trip_and_layout():
    vals = np.linspace(-0.5, 1.0, N_VALUES).astype(np.float32)
    data = livelink.encode(vals, frame=123456, sub_frame=0.25, rate=(60, 1), device_id="dév",
                           subject="Face")  # fmt: skip
    assert len(data) == 270 + len("dév".encode()) + len("Face")
    assert data[0] == 6 and data[1:5] == (4).to_bytes(4, "big")  # big-endian length
    p = livelink.decode(data)
    assert (p.device_id, p.subject, p.frame, p.sub_frame, p.rate_num, p.rate_den) == (
        "dév", "Face", 123456, 0.25, 60, 1)  # fmt: skip
    np.testing.assert_array_equal(p.values, vals)
    assert p.frame_time == pytest.approx((123456 + 0.25) / 60)
    assert livelink.rate_fraction(44100 / 512) == (44100, 512)
    assert livelink.rate_fraction(60.0) == (60, 1)
    assert len(NAMES) == 61 and NAMES[17] == "JawOpen"


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda d: d[:20], "short"),
        (lambda d: d[:40], "bytes"),
        (lambda d: d[:-4], "bytes"),
        (lambda d: d + b"\0", "bytes"),
        (lambda d: b"\x05" + d[1:], "version"),
        (lambda d: b"", "empty"),
    ],
)
def test_malformed_packets_are_counted(mutate, reason):
    good = livelink.encode(np.zeros(61), 1)
    c = livelink.PacketCounter()
    assert c.decode(mutate(good)) is None
    assert c.n_bad == 1 and any(reason in k for k in c.bad)


def test_wrong_count_and_nan_rejected():
    good = bytearray(livelink.encode(np.zeros(61), 1, device_id="", subject=""))
    pos = 1 + 4 + 4 + 16
    bad_count = bytes(good[:pos]) + bytes([52]) + bytes(good[pos + 1 :])
    with pytest.raises(livelink.MalformedPacket, match="count 52"):
        livelink.decode(bad_count)
    nan = livelink.encode(np.full(61, np.nan), 1)
    with pytest.raises(livelink.MalformedPacket, match="NaN"):
        livelink.decode(nan)


def _free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_loopback_capture_matches_what_was_sent(tmp_path):
    """Simulated phone (60 fps, jitter, one dropped, one malformed) → record.py → take."""
    wav = tmp_path / "cue.wav"
    sf.write(wav, np.zeros(44100 * 3, np.float32), 44100)
    port = _free_port()
    out = tmp_path / "take"
    proc = subprocess.Popen(
        [PYTHON, str(ROOT / "motion" / "record.py"), "--listen", f"127.0.0.1:{port}",
         "--wav", str(wav), "--out", str(out), "--duration", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    audio_start = None
    for _ in range(20):
        line = proc.stdout.readline()
        if line.startswith("audio start"):
            audio_start = float(line.split()[2])
            break
    assert audio_start is not None, proc.stderr.read()
    rng = np.random.default_rng(0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    n, first_frame, fps = 90, 2_000_000, 60
    sent_values, sent_host, sent_frames = [], [], []
    t0 = time.monotonic() + 0.2  # when frame 0 was "captured" on our clock
    for i in range(n):
        due = t0 + i / fps + rng.uniform(0, 0.006)  # up to 6 ms network/scheduling jitter
        while time.monotonic() < due:
            time.sleep(0.0005)
        if i == 40:
            continue  # dropped on the way
        if i == 50:
            sock.sendto(b"\x06garbage", ("127.0.0.1", port))  # malformed: skipped, counted
        vals = rng.uniform(0, 1, N_VALUES).astype(np.float32)
        sock.sendto(livelink.encode(vals, first_frame + i, 0.5, (fps, 1)), ("127.0.0.1", port))
        sent_values.append(vals)
        sent_host.append(t0 + i / fps)
        sent_frames.append(first_frame + i)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # Ctrl-C saves
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    take = load_take(out)
    np.testing.assert_array_equal(take.frame, sent_frames)
    np.testing.assert_array_equal(take.values, np.stack(sent_values))
    np.testing.assert_array_equal(take.rate, np.tile([fps, 1], (n - 1, 1)))
    np.testing.assert_allclose(take.sub_frame, 0.5)
    # face time on the audio clock: the sender's steady clock, fitted to the arrivals
    want = np.array(sent_host) - audio_start
    assert np.max(np.abs(take.t - want)) < 0.004, np.max(np.abs(take.t - want))
    assert np.all(take.arrival >= np.array(sent_host))
    s = take.meta["summary"]
    assert (s["frames"], s["dropped"], s["malformed"]) == (n - 1, 1, 1)
    assert s["effective_fps"] == pytest.approx(fps * (n - 2) / (n - 1), rel=1e-3)
    assert json.loads((out / "take.json").read_text())["audio_start_host"] == pytest.approx(
        audio_start, abs=1e-6
    )
    assert sf.info(out / "audio.wav").frames == 44100 * 3
    assert "saved take" in stdout
