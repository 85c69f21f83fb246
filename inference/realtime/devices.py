"""Sound cards through ``sounddevice`` (PortAudio): list them, pick them, stream through the engine.

``sounddevice`` is imported here only, when a device is used (:func:`import_sounddevice`), so
the file mode and the web UI work on machines without PortAudio. Every failure a user can fix is
one line (:class:`common.errors.UserError`): PortAudio or sounddevice missing, no such device, a
name that fits several devices, a sample rate the device refuses.

:func:`run_devices` opens one duplex stream (``--input`` → engine → ``--output``) whose callback
takes one engine block (at the device rate) and returns the converted block: the card plays it
while the next one is captured, which is the block term of the engine's latency. At the model's
rate (the default when both cards take it) nothing else is added; at another rate the streaming
resamplers hold samples back, so a block completes one callback late, and the output keeps a
reserve of up to one more block (:func:`fifo_margin`, printed at the start). Ctrl-C closes the
stream and returns normally (exit 0).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from common.errors import InputError, UsageError

HINT_PORTAUDIO = ("install PortAudio: scripts/setup.sh, or `sudo apt-get install libportaudio2`; "
                  "--in_file/--out_file work without it")  # fmt: skip


def import_sounddevice():
    """The ``sounddevice`` module, or a one-line :class:`InputError` when it or PortAudio is
    missing."""
    try:
        import sounddevice
    except OSError:  # the module is there, libportaudio.so.2 is not
        raise InputError(
            "sounddevice: the PortAudio library was not found", HINT_PORTAUDIO
        ) from None
    except ImportError:
        raise InputError("sounddevice: the Python package is not installed",
                         "pip install sounddevice==0.5.6 (requirements.txt)") from None  # fmt: skip
    return sounddevice


def _devices(sd) -> list[dict]:
    try:
        return [dict(d) for d in sd.query_devices()]
    except sd.PortAudioError as e:
        raise InputError(
            f"PortAudio: cannot list the sound devices ({e})", HINT_PORTAUDIO
        ) from None


def list_devices() -> str:
    """The sound devices, one line each: ``index: name (host API) in N / out M ch, default R Hz``.
    No device at all is an :class:`InputError`."""
    sd = import_sounddevice()
    devs = _devices(sd)
    if not devs:
        raise InputError("--list_devices: PortAudio sees no sound device",
                         "connect or enable one; on a server, use --in_file/--out_file")  # fmt: skip
    apis = [a["name"] for a in sd.query_hostapis()]
    lines = []
    for i, d in enumerate(devs):
        api = apis[d["hostapi"]] if 0 <= d["hostapi"] < len(apis) else "?"
        lines.append(f"{i}: {d['name']} ({api}) in {d['max_input_channels']} / out "
                     f"{d['max_output_channels']} ch, default {d['default_samplerate']:g} Hz")  # fmt: skip
    return "\n".join(lines)


def find_device(sd, spec: str | int | None, kind: str) -> int:
    """The index of the ``kind`` (``"input"``/``"output"``) device ``spec``: an index, a (part
    of a) name, or ``None`` for the default one."""
    flag = f"--{kind}"
    devs = _devices(sd)
    channels = f"max_{kind}_channels"
    if spec is None or spec == "":
        default = sd.default.device[0 if kind == "input" else 1]
        if default is None or int(default) < 0 or int(default) >= len(devs):
            raise InputError(f"{flag}: there is no default {kind} device" + ("" if devs else " (PortAudio sees no sound device)"),
                             f"list them with --list_devices and pick one with {flag}")  # fmt: skip
        return int(default)
    text = str(spec).strip()
    if text.lstrip("-").isdigit():
        i = int(text)
        if not 0 <= i < len(devs):
            there = f"there are {len(devs)}" if devs else "PortAudio sees no sound device"
            raise InputError(f"{flag} {text}: no such device ({there})",
                             "list them with --list_devices")  # fmt: skip
        if devs[i][channels] < 1:
            raise InputError(f"{flag} {text}: {devs[i]['name']!r} has no {kind} channels",
                             "list them with --list_devices")  # fmt: skip
        return i
    fits = [i for i, d in enumerate(devs) if d[channels] > 0 and text.lower() in d["name"].lower()]
    exact = [i for i in fits if devs[i]["name"].lower() == text.lower()]
    if len(exact) == 1:
        return exact[0]
    if not fits:
        raise InputError(f"{flag} {text!r}: no {kind} device has this name",
                         "list them with --list_devices")  # fmt: skip
    if len(fits) > 1:
        names = ", ".join(f"{i}: {devs[i]['name']}" for i in fits[:6])
        raise InputError(f"{flag} {text!r}: fits {len(fits)} {kind} devices ({names})",
                         f"give the index with {flag}")  # fmt: skip
    return fits[0]


def check_rate(sd, device: int, kind: str, rate: int) -> None:
    """:class:`UsageError` when ``device`` does not take ``rate`` Hz (mono float32)."""
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        check(device=device, channels=1, dtype="float32", samplerate=rate)
    except (sd.PortAudioError, ValueError) as e:
        d = sd.query_devices(device)
        raise UsageError(f"--samplerate {rate}: the {kind} device {device} ({d['name']}) does not "
                         f"take it ({e})", f"its default is {d['default_samplerate']:g} Hz") from None  # fmt: skip


def fifo_margin(rate: int, model_rate: int, blocksize: int, block: int, callbacks: int = 64) -> int:
    """Output samples (device rate) to hold in reserve so that no callback runs short: the
    resamplers (soxr streams) hold samples back, so at another rate than the model's a block may
    complete one callback late. Found by running the exact callback pattern through scratch
    resamplers (no model); 0 at the model's rate."""
    if rate == model_rate:
        return 0
    import soxr

    rs_in = soxr.ResampleStream(rate, model_rate, 1, dtype="float32", quality="HQ")
    rs_out = soxr.ResampleStream(model_rate, rate, 1, dtype="float32", quality="HQ")
    pending = available = needed = worst = 0
    for _ in range(callbacks):
        pending += len(rs_in.resample_chunk(np.zeros(blocksize, np.float32)))
        n, pending = divmod(pending, block)
        if n:
            available += len(rs_out.resample_chunk(np.zeros(n * block, np.float32)))
        needed += blocksize
        worst = max(worst, needed - available)
    return worst


def run_devices(engine, input: Any = None, output: Any = None, samplerate: int | None = None,
                log: Callable[[str], None] = print, stop: threading.Event | None = None) -> dict:  # fmt: skip
    """Stream ``input`` → ``engine`` → ``output`` until Ctrl-C (or ``stop`` is set); returns
    ``{blocks, underruns, seconds}``. ``samplerate`` None: the model's rate when both devices
    take it, else the input device's default rate."""
    from inference.realtime.session import StreamSession

    sd = import_sounddevice()
    di, do = find_device(sd, input, "input"), find_device(sd, output, "output")
    if samplerate is None:
        try:
            for d, kind in ((di, "input"), (do, "output")):
                check_rate(sd, d, kind, engine.sample_rate)
            samplerate = engine.sample_rate
        except UsageError:
            samplerate = int(sd.query_devices(di)["default_samplerate"])
    rate = int(samplerate)
    check_rate(sd, di, "input", rate)
    check_rate(sd, do, "output", rate)
    out_ch = min(2, int(sd.query_devices(do)["max_output_channels"]))
    sess = StreamSession(engine, rate, rate, prime=False)
    blocksize = round(engine.block_samples * rate / engine.sample_rate)
    jitter = fifo_margin(rate, engine.sample_rate, blocksize, engine.block_samples)
    state = {"fifo": np.zeros(jitter, np.float32), "underruns": 0, "blocks": 0, "error": None}

    def callback(indata, outdata, frames, _time, status):
        try:
            if status.output_underflow or status.input_overflow:
                state["underruns"] += 1
            y = np.concatenate([state["fifo"], sess.push(indata[:, 0].copy())])
            if y.shape[0] < frames:
                state["underruns"] += 1
                y = np.pad(y, (0, frames - y.shape[0]))
            outdata[:] = y[:frames, None]
            state["fifo"] = y[frames:]
            state["blocks"] += 1
        except Exception as e:  # noqa: BLE001 - re-raised in the main thread
            state["error"] = e
            raise sd.CallbackAbort from None

    engine.warmup()
    stop = stop or threading.Event()
    t0 = time.perf_counter()
    try:
        stream = sd.Stream(device=(di, do), samplerate=rate, blocksize=blocksize, dtype="float32",
                           channels=(1, out_ch), callback=callback)  # fmt: skip
    except sd.PortAudioError as e:
        raise InputError(f"--input {di} / --output {do}: cannot open the stream at {rate} Hz ({e})",
                         "try other devices or --samplerate") from None  # fmt: skip
    try:
        with stream:
            lat_in, lat_out = stream.latency
            log(f"streaming {sd.query_devices(di)['name']} -> {sd.query_devices(do)['name']} at "
                f"{rate} Hz; device latency {1000 * (lat_in + lat_out):.1f} ms on top of the "
                f"engine's {1000 * engine.latency_s:.1f} ms (+{1000 * jitter / rate:.1f} ms "
                f"resampling margin); Ctrl-C stops")  # fmt: skip
            while not stop.is_set() and stream.active:
                stop.wait(0.2)
    except KeyboardInterrupt:
        pass  # the `with` closed the stream
    if state["error"] is not None:
        raise state["error"]
    summary = {"blocks": state["blocks"], "underruns": state["underruns"],
               "seconds": time.perf_counter() - t0}  # fmt: skip
    log(f"stopped: {summary['blocks']} blocks, {summary['underruns']} underruns")
    return summary
