"""Record a take: Live Link Face UDP packets plus audio, timestamped (motion.md §1, fixes §9.1-2).

    python -m motion.record                         # 127.0.0.1:11111, microphone via sounddevice
    python -m motion.record --listen 0.0.0.0:11111  # accept the iPhone on the local network
    python -m motion.record --wav song.wav          # play (or time) a file while you perform to it

Point the Live Link Face app at this machine's address, port 11111. Every frame keeps the
packet's frame time (frame, sub-frame, rate) and its host arrival time (monotonic clock), and the
take keeps the host time of audio sample 0, so ``t`` (face time on the audio clock) is derived
from the sender's steady frame clock fitted to the arrival times (see :func:`retime`), not from
an assumed 60 fps. Malformed packets are counted and skipped. Ctrl-C (SIGINT) or SIGTERM stops
and saves; ``--duration`` stops by itself. Any length; the output is a take folder
(:mod:`motion.take`) and a capture summary is printed and stored in its take.json.

Frame numbers are the sender's signed 32-bit counter; one passing 2^31 - 1 wraps to -2^31 and is
unwrapped here (each number is read as the one nearest the previous), so it keeps counting up.
The take records ONE device: the first packet's device id and subject; packets from any other
device/subject are ignored and counted (``other_devices`` in the summary, a warning at the first).
Packets with a blendshape outside 0..1 by more than 0.05, or a rotation beyond +-4, are counted as
malformed and skipped; accepted blendshapes are clamped to 0..1.

Audio: ``--wav FILE`` uses that file as the take's audio; it is played through sounddevice when
installed (else the capture just times it: start your player when "audio start" is printed).
Without ``--wav`` the default input device is recorded with sounddevice (16-bit mono 44.1 kHz).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import signal
import socket
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.errors import InputError, UsageError  # noqa: E402
from motion.channels import N_BLENDSHAPES, N_VALUES  # noqa: E402
from motion.livelink import PacketCounter  # noqa: E402
from motion.take import Take, save_take  # noqa: E402

SR = 44100
BLEND_SLACK = 0.05  # blendshapes outside [-0.05, 1.05] make a packet malformed; others are clamped
MAX_ROTATION = 4.0  # |head/eye rotation| above this makes a packet malformed
MAX_DURATION_S = 24 * 3600.0


def parse_hostport(text: str, default_port: int = 11111) -> tuple[str, int]:
    """``"HOST:PORT"`` (or ``"HOST"``) → ``(host, port)``; ValueError unless 1 <= port <= 65535."""
    host, _, port = text.rpartition(":")
    if not host:
        host, port = text, str(default_port)
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"{text!r}: expected HOST:PORT") from None
    if not 1 <= number <= 65535:
        raise ValueError(f"{text!r}: port {number} is out of range (1..65535)")
    return host, number


class FrameUnwrapper:
    """Sender frame numbers (signed 32-bit, wrapping at 2^31) → an unwrapped ``int`` count.

    Each number is taken as the one nearest the previous (a step of less than 2^31 either way), so
    a counter that passes 2^31 - 1 and wraps to -2^31 keeps counting up (not "two billion frames
    dropped"); late packets (a small step back) keep their place.
    """

    def __init__(self) -> None:
        self.last_raw: int | None = None
        self.last = 0

    def __call__(self, raw: int) -> int:
        if self.last_raw is None:
            self.last_raw = self.last = int(raw)
            return self.last
        step = (int(raw) - self.last_raw) & 0xFFFFFFFF
        if step >= 1 << 31:
            step -= 1 << 32
        self.last_raw, self.last = int(raw), self.last + step
        return self.last


def value_problem(values: np.ndarray) -> str | None:
    """Why a packet's ``values [61]`` are out of range (the malformed reason), else None."""
    shapes, rotations = values[:N_BLENDSHAPES], values[N_BLENDSHAPES:]
    if shapes.min() < -BLEND_SLACK or shapes.max() > 1 + BLEND_SLACK:
        return "blendshape values outside 0..1"
    if rotations.size and np.abs(rotations).max() > MAX_ROTATION:
        return "rotation values out of range"
    return None


def retime(frame_time: np.ndarray, arrival: np.ndarray) -> tuple[np.ndarray, str]:
    """Host time of each frame ``[N]`` (s, monotonic clock) and how it was found.

    The sender's frame times are evenly spaced but on the phone's clock; arrival times are on
    ours but carry network and scheduling jitter (always late, never early). A line
    ``arrival ≈ a·frame_time + b`` is fitted (``a`` absorbs clock drift), then shifted down to the
    2nd percentile of the residuals (the least-delayed packets). Frame times that are not
    increasing (e.g. a sender with a constant frame number) fall back to the arrival times.
    """
    n = len(arrival)
    if n >= 2 and np.all(np.diff(frame_time) > 0):
        if n >= 20:
            a, b = np.polyfit(frame_time - frame_time[0], arrival, 1)
        else:
            a, b = 1.0, float(np.median(arrival - (frame_time - frame_time[0])))
        if 0.98 < a < 1.02:
            fit = a * (frame_time - frame_time[0]) + b
            return fit + np.percentile(arrival - fit, 2), "sender frame time fitted to arrival"
    return arrival.copy(), "host arrival time"


def summarise(frames: np.ndarray, frame_time: np.ndarray, arrival: np.ndarray,
              counter: PacketCounter, duplicates: int) -> dict:  # fmt: skip
    """Frames, drops (frame-number gaps), effective fps, arrival gaps and jitter."""
    n = len(frames)
    out: dict = {"frames": n, "malformed": counter.n_bad, "malformed_by_reason": dict(counter.bad),
                 "duplicates_or_late": duplicates}  # fmt: skip
    if n >= 2:
        d = np.diff(frames)
        out["dropped"] = int(np.sum(np.clip(d - 1, 0, None)))
        span = frame_time[-1] - frame_time[0]
        out["effective_fps"] = round((n - 1) / span, 3) if span > 0 else None
        period = np.median(np.diff(frame_time)) if span > 0 else np.median(np.diff(arrival))
        ga = np.diff(arrival)
        out["arrival_gaps_over_2_frames"] = int(np.sum(ga > 2 * period))
        out["max_arrival_gap_ms"] = round(float(ga.max()) * 1000, 2)
        out["duration_s"] = round(float(arrival[-1] - arrival[0]), 3)
    else:
        out["dropped"] = 0
    return out


class _Audio:
    """The take's audio: a file (``--wav``, played if sounddevice exists) or the microphone."""

    def __init__(self, wav: str | None, folder: Path):
        self.wav_path = wav
        self.folder = folder
        self.start_host: float | None = None
        self.stream = None
        self.data: np.ndarray | None = None
        self.sr = SR
        self.chunks: list[np.ndarray] = []
        self.note = ""

    def start(self) -> None:
        try:
            import sounddevice as sd
        except (ImportError, OSError):
            sd = None
        try:
            self._start(sd)
        except Exception as e:  # PortAudioError: no device, device busy, rate not supported
            if sd is None or not isinstance(e, sd.PortAudioError):
                raise
            raise InputError(f"audio device: {e}", "check the sound device settings, or pass "
                             "--wav FILE") from None  # fmt: skip

    def _start(self, sd) -> None:
        if self.wav_path:
            from common.audio import load_audio

            self.data, self.sr = load_audio(self.wav_path)
            if sd is not None:
                try:
                    sd.play(self.data, self.sr)
                    self.start_host = time.monotonic() + float(sd.get_stream().latency)
                    self.note = "played through sounddevice"
                    return
                except sd.PortAudioError as e:  # no output device (a server): the file still
                    why = f"no output device: {e}"  # is the take's audio, timed as below
            else:
                why = "no sounddevice"
            self.start_host = time.monotonic()
            self.note = f"not played ({why}): timed from 'audio start'"
            return
        if sd is None:
            raise InputError(
                "no audio input: sounddevice is not installed",
                "pip install sounddevice, or pass --wav FILE",
            )

        def callback(indata, frames, t, status):  # PortAudio thread
            if self.start_host is None:  # host time of sample 0 from the ADC timestamp
                self.start_host = time.monotonic() - (t.currentTime - t.inputBufferAdcTime)
            self.chunks.append(indata[:, 0].copy())

        self.stream = sd.InputStream(samplerate=SR, channels=1, dtype="float32", callback=callback)
        self.stream.start()
        self.note = "recorded from the default input device"
        while self.start_host is None:
            time.sleep(0.005)

    def stop(self) -> np.ndarray:
        if self.stream is not None:
            self.stream.stop()
            self.stream.close()
            return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)
        if self.wav_path:
            with contextlib.suppress(ImportError, OSError):
                import sounddevice as sd

                sd.stop()
        return self.data


def capture(listen: str, folder: Path, wav: str | None, duration: float | None) -> dict:
    """Run one capture into ``folder``; returns the summary."""
    host, port = parse_hostport(listen)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise InputError(f"--listen {listen}: cannot listen there ({e.strerror or e})",
                         "is another recorder using the port? choose another one") from None  # fmt: skip
    sock.settimeout(0.05)
    counter = PacketCounter()
    rows: dict[int, tuple] = {}  # unwrapped frame number → (arrival, sub_frame, num, den, values)
    duplicates = 0
    device = subject = None
    others: dict[str, int] = {}  # "device/subject" → packets ignored
    unwrap = FrameUnwrapper()
    audio = _Audio(wav, folder)
    try:
        audio.start()
    except BaseException:
        sock.close()
        raise
    if duration is None and audio.data is not None:
        duration = len(audio.data) / audio.sr + 0.5
    print(f"listening on {host}:{port}", flush=True)
    print(f"audio start {audio.start_host:.6f} ({audio.note})", flush=True)
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    last_report = time.monotonic()
    try:
        while not stop["now"]:
            now = time.monotonic()
            if duration is not None and now - audio.start_host >= duration:
                break
            try:
                data, _ = sock.recvfrom(2048)
            except TimeoutError:
                continue
            except InterruptedError:
                continue
            arrival = time.monotonic()
            p = counter.decode(data)
            if p is None:
                continue
            if device is None:
                device, subject = p.device_id, p.subject
            elif (p.device_id, p.subject) != (device, subject):
                key = f"{p.device_id}/{p.subject}"
                if not others:
                    print(f"warning: packets from a second device ({key}) are ignored; this take "
                          f"records {device}/{subject} (stop the other sender)", file=sys.stderr,
                          flush=True)  # fmt: skip
                others[key] = others.get(key, 0) + 1
                continue
            problem = value_problem(p.values)
            if problem is not None:
                counter.bad[problem] += 1
                continue
            frame = unwrap(p.frame)
            if frame in rows:
                duplicates += 1
                continue
            values = p.values.copy()
            values[:N_BLENDSHAPES] = np.clip(values[:N_BLENDSHAPES], 0.0, 1.0)
            rows[frame] = (arrival, p.sub_frame, p.rate_num, p.rate_den, values)
            if arrival - last_report > 5:
                last_report = arrival
                print(f"  {len(rows)} frames, {counter.n_bad} malformed", flush=True)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        sock.close()
        audio_data = audio.stop()
    return _save(folder, rows, counter, duplicates, audio, audio_data, device, subject, others)


def _save(
    folder, rows, counter, duplicates, audio, audio_data, device, subject, others=None
) -> dict:
    frames = np.array(sorted(rows), dtype=np.int64)
    n = len(frames)
    arrival = np.array([rows[f][0] for f in frames], np.float64)
    sub = np.array([rows[f][1] for f in frames], np.float32)
    rate = np.array([[rows[f][2], rows[f][3]] for f in frames], np.int32).reshape(n, 2)
    values = np.array([rows[f][4] for f in frames], np.float32).reshape(n, N_VALUES)
    frame_time = (frames + sub.astype(np.float64)) * rate[:, 1] / np.maximum(rate[:, 0], 1)
    host, how = retime(frame_time, arrival)
    summary = summarise(frames, frame_time, np.sort(arrival), counter, duplicates)
    # arrived after a later frame (kept, in frame order)
    summary["out_of_order"] = int(np.sum(np.diff(arrival) < 0)) if n > 1 else 0
    summary["other_devices"] = dict(others or {})
    take = Take(
        values=values, t=host - audio.start_host, arrival=arrival, frame=frames, sub_frame=sub,
        rate=rate,
        meta={"source": "udp", "audio_start_host": audio.start_host, "audio_note": audio.note,
              "timing": how, "device_id": device, "subject": subject, "summary": summary,
              "created": _dt.datetime.now().isoformat(timespec="seconds")},
    )  # fmt: skip
    if audio_data is None or len(audio_data) == 0:
        audio_data, audio.sr = np.zeros(1, np.float32), SR
    # an old take here (main() refuses one without --overwrite) becomes unfinished first, so a
    # crash while writing never leaves its take.json over the new arrays
    (Path(folder) / "take.json").unlink(missing_ok=True)
    save_take(folder, take, audio_data, audio.sr)
    return summary


def check_args(args) -> None:
    """Refuse out-of-range flags before anything is opened (one line, exit 2)."""
    from common.errors import UsageError

    try:
        parse_hostport(args.listen)
    except ValueError as e:
        raise UsageError(f"--listen {e}") from None
    d = args.duration
    if d is not None and not (0 < d <= MAX_DURATION_S):  # also NaN
        raise UsageError(f"--duration {d}: out of range; give seconds in (0, {MAX_DURATION_S:.0f}]")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--listen", default="127.0.0.1:11111", help="HOST:PORT to receive on")
    p.add_argument("--wav", default=None, help="audio file for the take (played during capture)")
    p.add_argument("--out", default=None, help="take folder (default records/<date-time>)")
    p.add_argument("--duration", type=float, default=None,
                   help="stop after this many seconds (default: end of --wav, else Ctrl-C)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace a take already in --out")
    args = p.parse_args(argv)
    check_args(args)
    stamp = _dt.datetime.now().strftime("%Y-%m-%d-%H-%M-%S")
    folder = Path(args.out or f"records/{stamp}")
    if (folder / "take.json").exists() and not args.overwrite:
        raise UsageError(f"{folder}: a take is already there",
                         "pass --overwrite to replace it, or choose another --out")  # fmt: skip
    summary = capture(args.listen, folder, args.wav, args.duration)
    print(f"saved take {folder}")
    print(json.dumps(summary, indent=2))
    if summary["frames"] == 0:
        print("warning: no face frames arrived; check the app's target address and port",
              file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    from common.cli import run_main

    sys.exit(run_main(main))
