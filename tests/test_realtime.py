"""The realtime engine (inference/realtime) and realtime.py.

Buffering, SOLA joins, latency and gating are checked exactly with a test double of the model (an
identity converter: the engine code under test is the real one); determinism, the gate's model
calls, f0 continuity and the script run the real stages on a tiny random-init model
(tests/infer_fixtures.py)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from common.cli import run_main
from common.errors import InputError, UsageError
from inference.realtime import StreamConfig, StreamEngine, StreamSession
from inference.realtime.convert import SvcConverter, correct_octaves
from inference.realtime.filemode import stream_file
from inference.realtime.sola import crossfade, fades, find_offset
from tests.conftest import ROOT, run_script
from tests.infer_fixtures import make_workdir

SR, HOP = 44100, 512
SCRIPT = ROOT / "realtime.py"
BASE = ["-m", "logs/44k/G_0.pth", "-c", "logs/44k/config.json", "-s", "alto", "--precision", "fp32"]


def stand_in_svc():
    """Rate, hop and speakers of a model, for engines whose converter is a test double."""

    def speaker_id(s):
        if s not in ("a", 0):
            raise InputError(f"config.json: speaker {s!r} is not in the speaker list: a (0)")
        return 0

    return SimpleNamespace(target_sample=SR, hop_size=HOP, spk2id={"a": 0}, speaker_id=speaker_id)


class Identity:
    """The window's last ``n_out`` samples, shifted later by ``shifts[call]`` samples (the phase
    jitter of a real model between blocks); counts its calls."""

    def __init__(self, shifts=None):
        self.shifts = shifts
        self.calls = 0

    def __call__(self, window, n_out):
        d = 0 if self.shifts is None else int(self.shifts[self.calls % len(self.shifts)])
        self.calls += 1
        return window[len(window) - n_out - d : len(window) - d].copy()


def identity_engine(converter=None, **kw):
    cfg = StreamConfig(**{"speaker": "a", "threshold_db": -120.0, **kw})
    return StreamEngine(stand_in_svc(), cfg, converter=converter or Identity())


def run_blocks(engine, x):
    b = engine.block_samples
    n = len(x) // b
    return np.concatenate([engine.process(x[i * b : (i + 1) * b]) for i in range(n)])


# ------------------------------------------------------------------------------------------------
# SOLA
# ------------------------------------------------------------------------------------------------
def test_find_offset_and_crossfade_units():
    rng = np.random.default_rng(0)
    head = rng.standard_normal(900).astype(np.float32)
    for k in (0, 17, 250, 400):
        assert find_offset(head[k : k + 500], head) == k
    assert find_offset(np.zeros(500, np.float32), head) == -1  # nothing to align to
    fi, fo = fades(64)
    assert np.allclose(fi + fo, 1.0) and fi[0] < 0.01 and fo[-1] < 0.01
    assert np.all(np.diff(fi) > 0)
    same = rng.standard_normal(64).astype(np.float32)
    assert np.allclose(crossfade(same, same), same, atol=1e-6)  # correlated: level kept (Hann)


@pytest.mark.parametrize("jitter", [False, True])
def test_sola_joins_a_sine_without_discontinuity(jitter):
    """A sine cut into blocks comes out as a sine: no sample-to-sample step above the sine's own
    largest step and its amplitude kept through every crossfade, also when each conversion is
    shifted by a different amount (SOLA finds the shift; a plain crossfade would blend two
    phases and dip)."""
    period = 200  # 220.5 Hz
    n = 40 * 11264
    t = np.arange(n)
    amp = 0.5
    sine = (amp * np.sin(2 * np.pi * t / period)).astype(np.float32)
    shifts = np.random.default_rng(1).integers(0, period // 2, 64) if jitter else None
    engine = identity_engine(Identity(shifts))
    out = run_blocks(engine, sine)
    settled = out[2 * engine.block_samples :]  # after the fade-in from silence
    max_step = np.abs(np.diff(sine)).max()
    assert np.abs(np.diff(settled)).max() <= max_step * (1 + 1e-4)
    peaks = np.abs(settled[: len(settled) // period * period]).reshape(-1, period).max(axis=1)
    assert np.allclose(peaks, amp, atol=2e-3), (peaks.min(), peaks.max())
    if jitter:
        assert len(set(engine.stats["sola_offsets"][2:])) > 3  # it did have to search


def test_without_sola_the_jittered_joins_would_dip():
    """The same jittered stream with the search range 0 (no SOLA): the crossfades blend shifted
    sines, and the amplitude test above fails; so that test can fail."""
    period = 200
    sine = (0.5 * np.sin(2 * np.pi * np.arange(20 * 11264) / period)).astype(np.float32)
    shifts = np.random.default_rng(1).integers(0, period // 2, 64)
    out = run_blocks(identity_engine(Identity(shifts), sola_search_time=0.0), sine)[2 * 11264 :]
    peaks = np.abs(out[: len(out) // period * period]).reshape(-1, period).max(axis=1)
    assert peaks.min() < 0.45


# ------------------------------------------------------------------------------------------------
# latency
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [44100, 48000])
def test_impulse_comes_out_delayed_by_the_reported_latency(rate):
    engine = identity_engine()
    assert engine.block_samples % HOP == 0 and engine.window_samples % HOP == 0
    assert engine.latency_s == pytest.approx((11264 + 2205 + 529) / SR)
    n = int(4.0 * rate)
    x = 1e-4 * np.random.default_rng(2).standard_normal(n).astype(np.float32)  # above -120 dB
    spikes = [int(0.4 * rate), int(1.33 * rate), int(2.71 * rate)]
    x[spikes] = 0.9
    sess = StreamSession(engine, rate, rate)
    sizes = np.random.default_rng(3).integers(1, 3000, 10_000)
    outs, pos = [], 0
    for s in sizes:
        if pos >= n:
            break
        outs.append(sess.push(x[pos : pos + s]))
        assert 0 <= min(n, pos + s) - sum(map(len, outs)) <= 0.05 * rate  # paced like the input
        pos += s
    outs.append(sess.flush())
    y = np.concatenate(outs)
    assert len(y) == n
    lat = round(engine.latency_s * rate)
    hop = HOP * rate / SR
    for t in spikes:
        seg = np.abs(y[t : t + 2 * lat])
        assert seg.max() > 0.5
        assert abs(t + int(np.argmax(seg)) - (t + lat)) <= hop


def test_engine_process_delay_and_reset():
    engine = identity_engine()
    b = engine.block_samples
    x = 1e-4 * np.random.default_rng(4).standard_normal(4 * b).astype(np.float32)
    x[b + 100] = 1.0
    y = run_blocks(engine, x)
    assert int(np.argmax(y)) == b + 100 + engine.delay_samples
    engine.reset()
    assert engine.stats["blocks"] == 0
    assert np.array_equal(run_blocks(engine, x), y)


def test_config_values_are_checked():
    for kw, says in [({"block_time": -0.1}, "--block_time -0.1: out of range"),
                     ({"block_time": 0.2, "crossfade_time": 0.2}, "--crossfade_time 0.2"),
                     ({"extra_time": float("nan")}, "--extra_time nan"),
                     ({"threshold_db": 3}, "--threshold 3"),
                     ({"f0_predictor": "yin"}, "--f0_predictor yin: unknown"),
                     ({"seed": 1.5}, "--seed 1.5"),
                     ({"cluster_infer_ratio": 2}, "--cluster_infer_ratio 2")]:  # fmt: skip
        with pytest.raises(UsageError, match=says.replace("(", r"\(")) as e:
            StreamConfig(**kw)
        assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="speaker 'nobody'.*a \\(0\\)"):
        identity_engine(speaker="nobody")
    with pytest.raises(ValueError, match="blocks of 11264"):
        identity_engine().process(np.zeros(100, np.float32))


# ------------------------------------------------------------------------------------------------
# gate
# ------------------------------------------------------------------------------------------------
def test_silence_gate_skips_the_converter():
    conv = Identity()
    engine = identity_engine(conv, threshold_db=-50.0)
    b = engine.block_samples
    loud = 0.3 * np.sin(np.arange(b) / 7.0).astype(np.float32)
    quiet = 1e-4 * loud  # -90 dB
    blocks = [loud, loud, quiet, np.zeros(b, np.float32), quiet, loud]
    outs = [engine.process(x) for x in blocks]
    # block 2 is quiet but its output still lags into block 1: converted
    assert conv.calls == 4 and engine.stats["model_calls"] == 4
    assert engine.stats["gated_blocks"] == 2
    assert engine.stats["gated"] == [False, False, False, True, True, False]
    f = engine.crossfade_samples
    assert np.abs(outs[3][:f]).max() > 0  # the previous tail, faded out
    assert np.abs(outs[3][f:]).max() == 0 and np.abs(outs[4]).max() == 0


# ------------------------------------------------------------------------------------------------
# f0 continuity
# ------------------------------------------------------------------------------------------------
def test_octave_jump_at_a_join_is_corrected():
    v = np.ones(6, bool)
    assert np.allclose(correct_octaves(np.array([400.0, 402, 404, 406, 408, 410]), v, 200.0),
                       [200, 201, 202, 203, 204, 205])  # fmt: skip
    assert np.allclose(correct_octaves(np.array([100.0, 101, 202, 203, 102, 103]), v, 200.0),
                       [200, 202, 202, 203, 204, 206])  # fmt: skip
    glide = np.array([210.0, 240, 280, 320, 370, 410])  # a leap sung with a glide: kept
    assert np.allclose(correct_octaves(glide, v, 200.0), glide)
    fifth = np.array([300.0] * 6)  # 1.5x: not an octave
    assert np.allclose(correct_octaves(fifth, v, 200.0), fifth)
    rest = np.array([0.0] * 10 + [400.0])  # after a rest the next note may be anywhere
    assert correct_octaves(rest, rest > 0, 200.0)[-1] == 400.0
    assert correct_octaves(np.array([400.0]), np.ones(1, bool), None)[0] == 400.0


def test_converter_history_keeps_played_frames_and_corrects_new_ones():
    conv = SvcConverter.__new__(SvcConverter)
    conv.block_frames = 4
    conv.reset()
    t = 20
    f0 = np.full(t, 220.0)
    uv = np.ones(t, bool)
    for _ in range(2):  # a held note: its played frames become a trusted reference
        f1, _ = conv.continuity(f0.copy(), uv.copy(), 2, 12)
    assert np.allclose(f1, 220.0)
    jumped = np.full(t, 220.0)
    jumped[12:] = 440.0  # the new frames come out an octave up
    jumped[5] = 300.0  # an already played frame is re-estimated differently
    f2, _ = conv.continuity(jumped, uv.copy(), 2, 12)
    assert np.allclose(f2[12:], 220.0) and f2[5] == 220.0


# ------------------------------------------------------------------------------------------------
# the real stages (tiny model)
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rt_work")
    make_workdir(root)
    return root


@pytest.fixture
def one_thread():
    """The real-model tests run on one torch thread: many small convolutions per block, on a
    machine shared with other runs, go much faster without waiting for a second thread."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def load_svc(work: Path, **kw):
    from inference.infer_tool import Svc

    return Svc(work / "logs/44k/G_0.pth", work / "logs/44k/config.json", "cpu",
               work / "logs/44k/kmeans_10000.pt", pretrain_dir=work / "pretrain", **kw)  # fmt: skip


@pytest.fixture(scope="module")
def svc(work):
    return load_svc(work)


def test_file_mode_is_deterministic_with_a_seed(svc, work, one_thread):
    wav, sr = sf.read(work / "raw" / "song.wav", dtype="float32")
    wav = wav[int(1.6 * sr) :]  # 1.6 s of singing, 0.8 s of silence
    cfg = dict(speaker="bass", transpose=3, cluster_infer_ratio=0.5, block_time=0.4, extra_time=0.5)
    engine = StreamEngine(svc, StreamConfig(**cfg))
    a, rep = stream_file(engine, wav, sr, paced=False)
    b, _ = stream_file(StreamEngine(svc, StreamConfig(**cfg)), wav, sr, paced=False)
    c, _ = stream_file(StreamEngine(svc, StreamConfig(**cfg, seed=7)), wav, sr, paced=False)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()
    assert len(a) == len(wav) and np.isfinite(a).all() and np.abs(a).max() > 1e-3
    assert rep["blocks"] == rep["model_calls"] + rep["gated_blocks"] and rep["model_calls"] >= 3
    assert rep["gated_blocks"] >= 1  # the song ends with 0.8 s of silence
    assert rep["joins"][0] == 2 * engine.block_samples and rep["latency_samples"] > 0
    assert set(rep["compute_s"]) == {"p50", "p95", "p99", "max", "mean"}


def test_real_gate_does_not_call_the_model(svc, one_thread):
    engine = StreamEngine(svc, StreamConfig(speaker="alto"))
    b = engine.block_samples
    for _ in range(4):
        assert not engine.process(np.zeros(b, np.float32)).any()
    assert engine.converter.calls == 0 and engine.stats["gated_blocks"] == 4
    from tests.infer_fixtures import singing

    engine.process(singing(b / SR + 0.1)[:b])
    assert engine.converter.calls == 1


# ------------------------------------------------------------------------------------------------
# realtime.py
# ------------------------------------------------------------------------------------------------
def in_process(work, *args):
    """run_main of realtime.py's main in ``work``: (exit code, stderr's lines)."""
    import contextlib
    import io
    import os

    err = io.StringIO()
    cwd = os.getcwd()
    os.chdir(work)
    try:
        from inference.realtime.cli import main

        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = run_main(main, [*BASE, *map(str, args)])
    finally:
        os.chdir(cwd)
    return rc, err.getvalue().strip().splitlines()


@pytest.mark.parametrize("args, rc, says", [
    (["--in_file", "raw/song.wav", "--out_file", "o.wav", "--crossfade_time", "0.3"], 2, "--crossfade_time 0.3"),
    (["--in_file", "raw/song.wav", "--out_file", "o.wav", "-s", "tenor"], 1, "speaker 'tenor'"),
    (["--in_file", "raw/nope.wav", "--out_file", "o.wav"], 1, "--in_file raw/nope.wav: not found"),
    (["--out_file", "o.wav"], 2, "--out_file: only with --in_file"),
    (["--in_file", "raw/song.wav"], 2, "give --out_file"),
    (["--in_file", "raw/song.wav", "--out_file", "o.xyz"], 2, "--out_file o.xyz: not a format"),
    (["--in_file", "raw/song.wav", "--out_file", "o.wav", "--input", "1"], 2, "--input: a sound card flag"),
    (["--in_file", "raw/song.wav", "--out_file", "o.wav", "-cr", "0.5", "-cm", "none.pt"], 1, "none.pt: not found"),
])  # fmt: skip
def test_bad_flags_in_process(work, args, rc, says):
    code, lines = in_process(work, *args)
    assert code == rc and len(lines) == 1 and says in lines[0], lines
    assert not (work / "o.wav").exists()


def script(work, *args):
    return run_script([SCRIPT, *map(str, args)], cwd=work, check=False, timeout=300)


@pytest.mark.parametrize("args, rc, says", [
    ([*BASE, "--input", "no such card"], 1, "--input"),
    ([*BASE, "--samplerate", "1000"], 2, "--samplerate 1000: unsupported sample rate"),
    (["-m", "logs/44k/G_404.pth", "-c", "logs/44k/config.json", "--in_file", "raw/song.wav",
      "--out_file", "o.wav"], 1, "G_404.pth"),
    ([*BASE, "--block_time", "0", "--in_file", "raw/song.wav", "--out_file", "o.wav"], 2,
     "--block_time 0.0: out of range"),
])  # fmt: skip
def test_script_errors_are_one_line(work, args, rc, says):
    p = script(work, *args)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == rc, p.stderr
    assert len(lines) == 1 and says in lines[0] and "Traceback" not in p.stderr, p.stderr


def test_script_list_devices_is_a_list_or_one_line(work):
    p = script(work, "--list_devices")
    assert "Traceback" not in p.stderr
    if p.returncode == 0:
        assert p.stdout.strip().splitlines()[0].startswith("0: ")
    else:
        assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_script_file_mode_end_to_end(work):
    p = script(work, *BASE, "--in_file", "raw/st48.flac", "--out_file", "rt_out.wav", "--report",
               "rt.json", "--as_fast_as_possible", "--block_time", "0.2")  # fmt: skip
    assert p.returncode == 0, p.stderr
    first = p.stdout.strip().splitlines()[0]
    assert first.startswith("latency: block 209.0 ms") and "algorithmic" in first
    out, sr = sf.read(work / "rt_out.wav", dtype="float32")
    info = sf.info(work / "raw" / "st48.flac")
    assert sr == 48000 and abs(len(out) - info.frames) <= 0.2 * sr
    rep = json.loads((work / "rt.json").read_text())
    assert rep["blocks"] > 5 and rep["sample_rate"] == 48000 and rep["settings"]["spk"] == "alto"


def test_backend_and_precision_come_from_the_svc(svc, work, one_thread):
    """The converter runs whatever the Svc was loaded with: the ONNX backend gives the torch
    backend's audio to float rounding, bf16 close to it; one code path (Svc.synthesize)."""
    from tests.infer_fixtures import singing

    cfg = dict(speaker="bass", transpose=2)
    ref_engine = StreamEngine(svc, StreamConfig(**cfg))
    window = singing(ref_engine.window_samples / SR + 0.1)[: ref_engine.window_samples]
    n = ref_engine.convert_samples
    ref = ref_engine.converter(window, n)
    onnx = StreamEngine(load_svc(work, backend="onnx"), StreamConfig(**cfg)).converter(window, n)
    bf16 = StreamEngine(load_svc(work, precision="bf16"), StreamConfig(**cfg)).converter(window, n)
    scale = np.abs(ref).max()
    assert scale > 1e-3
    assert np.abs(onnx - ref).max() < 1e-3 * scale
    snr = 10 * np.log10(np.sum(ref**2) / np.sum((bf16 - ref) ** 2))
    assert 15 < snr < 200, snr  # close, and not the fp32 path


# ------------------------------------------------------------------------------------------------
# sound cards, with a stand-in for the sounddevice module (no card on a test machine)
# ------------------------------------------------------------------------------------------------
class FakeSoundDevice:
    """The part of sounddevice that devices.py uses: two devices, 44.1/48 kHz only, a duplex
    Stream whose callback a thread drives with ``blocks`` blocks of ``signal``."""

    class PortAudioError(Exception):
        pass

    class CallbackAbort(Exception):
        pass

    def __init__(self, signal, blocks, stop):
        self.signal, self.blocks, self.stop = signal, blocks, stop
        self.default = SimpleNamespace(device=[0, 1])
        self.played = []
        self.devs = [
            {"name": "USB Mic", "hostapi": 0, "max_input_channels": 1, "max_output_channels": 0,
             "default_samplerate": 48000.0},
            {"name": "USB Speakers", "hostapi": 0, "max_input_channels": 0, "max_output_channels": 2,
             "default_samplerate": 48000.0},
        ]  # fmt: skip

    def query_devices(self, device=None):
        return self.devs if device is None else self.devs[device]

    def query_hostapis(self):
        return [{"name": "ALSA"}]

    def _check(self, samplerate, **_):
        if samplerate not in (44100, 48000):
            raise self.PortAudioError("Invalid sample rate [PaErrorCode -9997]")

    check_input_settings = check_output_settings = _check

    def Stream(self, device, samplerate, blocksize, dtype, channels, callback):  # noqa: N802
        import threading

        fake = self

        class Stream:
            latency = (0.01, 0.02)
            active = True

            def __enter__(self):
                def drive():
                    for k in range(fake.blocks):
                        out = np.zeros((blocksize, channels[1]), np.float32)
                        x = fake.signal[k * blocksize : (k + 1) * blocksize, None]
                        status = SimpleNamespace(output_underflow=False, input_overflow=False)
                        callback(x, out, blocksize, None, status)
                        fake.played.append(out.copy())
                    fake.stop.set()

                self.thread = threading.Thread(target=drive)
                self.thread.start()
                return self

            def __exit__(self, *exc):
                self.thread.join()

        return Stream()


@pytest.mark.parametrize("asked, rate", [(None, 44100), (48000, 48000)])
def test_devices_stream_through_the_engine(monkeypatch, asked, rate):
    import sys
    import threading

    from inference.realtime import devices

    engine = identity_engine()
    blocks = 12
    bs = round(engine.block_samples * rate / SR)
    x = 1e-3 * np.random.default_rng(5).standard_normal(bs * blocks).astype(np.float32)
    spike = 3 * bs + 1234
    x[spike] = 0.9
    stop = threading.Event()
    fake = FakeSoundDevice(x, blocks, stop)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    lines = []
    summary = devices.run_devices(engine, "mic", "1", asked, log=lines.append, stop=stop)
    assert summary["blocks"] == blocks and summary["underruns"] == 0
    assert f"at {rate} Hz" in lines[0] and "30.0 ms" in lines[0]  # (default: the model's rate)
    played = np.concatenate(fake.played)
    assert played.shape == (bs * blocks, 2) and np.array_equal(played[:, 0], played[:, 1])
    # the card adds its one-block slot: the delay here is the engine's stream delay, plus at
    # another rate than the model's the resamplers' margin (a block and what they hold back)
    margin = devices.fifo_margin(rate, SR, bs, engine.block_samples)
    assert (margin == 0) == (rate == SR) and margin < 1.3 * bs
    got = int(np.argmax(np.abs(played[:, 0])))
    want = spike + round(engine.delay_samples * rate / SR) + margin
    assert abs(got - want) <= round(HOP * rate / SR)
    assert devices.find_device(fake, "USB", "input") == 0  # only one input device has "USB"
    with pytest.raises(InputError, match="--output 'usb mic': no output device"):
        devices.find_device(fake, "usb mic", "output")
    with pytest.raises(InputError, match="--input 7: no such device"):
        devices.find_device(fake, "7", "input")
    with pytest.raises(UsageError, match="--samplerate 22050: the input device 0 \\(USB Mic\\)"):
        devices.run_devices(engine, 0, 1, 22050)
    fake.devs.append(dict(fake.devs[0], name="USB Mic 2"))
    with pytest.raises(InputError, match="fits 2 input devices"):
        devices.find_device(fake, "mic", "input")
