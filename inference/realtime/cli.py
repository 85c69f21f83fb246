"""``realtime.py``: live voice conversion from a sound card, or a file streamed the same way.

    python realtime.py -m logs/44k/G_800.pth -c logs/44k/config.json -s alto --list_devices
    python realtime.py -m ... -c ... -s alto --input 1 --output 3          # sound cards, Ctrl-C stops
    python realtime.py -m ... -c ... -s alto --in_file raw/song.wav --out_file out.wav [--report r.json]

Flags as RVC and so-vits-svc-fork users know them (block, crossfade and extra time, threshold in dB)
plus this repository's model flags (``-m -c -s -t -cr -cm -fr -ns --precision --backend --device
--seed``). The first line printed is the latency budget. Every mistake a user can make is one line
and a non-zero exit (``common.cli.run_main``): a bad flag (2), a missing file / model / device (1).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

from common.errors import InputError, UsageError

logger = logging.getLogger("realtime")


WHISPER_WINDOW_HELP = (
    "Whisper speech encoders only: short (default) encodes each window padded to the next second, "
    "30s pads it to 30 s as offline. Demo voice, bf16, 1 thread: compute per 0.25 s block p50 "
    "666 ms (30s) vs 115 ms (short); stream vs offline f0 corr 0.992 both, SECS diff +0.018 vs "
    "+0.009, loudness corr 0.61 vs 0.73"
)


def build_parser() -> argparse.ArgumentParser:
    from common.precision import cpu_has_bf16

    p = argparse.ArgumentParser(description="realtime voice conversion (sound cards or a file)")
    a = p.add_argument
    a(
        "-m",
        "--model_path",
        default="logs/44k/G_37600.pth",
        help="model (G_*.pth, or a folder: its newest)",
    )
    a("-c", "--config_path", default="logs/44k/config.json", help="config path")
    a("-s", "--spk", default=None, help="target speaker (name or id; default the model's first)")
    a("-t", "--trans", type=float, default=0.0, help="key shift in semitones")
    a(
        "-f0p",
        "--f0_predictor",
        default="fcpe",
        help="fcpe (default), rmvpe, crepe, pm, dio, harvest",
    )
    a(
        "-cr",
        "--cluster_infer_ratio",
        type=float,
        default=0.0,
        help="cluster / retrieval mix ratio 0..1",
    )
    a("-cm", "--cluster_model_path", default="", help="k-means file or feature index (with -cr)")
    a(
        "-fr",
        "--feature_retrieval",
        action="store_true",
        help="-cm is a feature index (train_index.py)",
    )
    a("-ns", "--noice_scale", type=float, default=0.4, help="prior noise scale")
    a("--block_time", type=float, default=0.25, help="block in s (rounded up to the 11.6 ms hop)")
    a("--crossfade_time", type=float, default=0.05, help="crossfade at each join in s")
    a(
        "--extra_time",
        type=float,
        default=1.0,
        help="left context for the encoder / f0 in s (no latency)",
    )
    a("--sola_search_time", type=float, default=0.012, help="join search range in s")
    a("--whisper_window", choices=["short", "30s"], default="short",
      help=WHISPER_WINDOW_HELP)  # fmt: skip
    a(
        "--threshold",
        type=float,
        default=-50.0,
        help="silence gate in dBFS (quieter blocks skip the model)",
    )
    a("--precision", choices=["fp32", "bf16"], default="bf16" if cpu_has_bf16() else "fp32",
      help="default bf16 on CPUs with native bf16 (avx512_bf16 / amx), else fp32")  # fmt: skip
    a(
        "--backend",
        choices=["torch", "onnx"],
        default="torch",
        help="synthesizer in torch or ONNX Runtime",
    )
    a(
        "--onnx_model",
        default=None,
        help="with --backend onnx: a *_SoVits.onnx (default: export on first use)",
    )
    a("-d", "--device", default=None, help="torch device (default cuda if available, else cpu)")
    a("--seed", type=int, default=52468, help="noise seed (same input and seed, same output)")
    a("--list_devices", action="store_true", help="list the sound devices and exit")
    a("--input", default=None, help="input sound device (index or name; default the system's)")
    a("--output", default=None, help="output sound device (index or name; default the system's)")
    a("--samplerate", type=int, default=None, help="sound card rate (default the model's if taken)")
    a("--in_file", default=None, help="file mode: stream this file instead of a sound card")
    a("--out_file", default=None, help="file mode: write the converted stream here")
    a("--as_fast_as_possible", action="store_true", help="file mode: do not pace at real time")
    a("--report", default=None, help="file mode: write the report (JSON) here")
    return p


def stream_config(args: argparse.Namespace):
    """The :class:`StreamConfig` of the flags (UsageError, one line, for a bad value)."""
    from inference.realtime import StreamConfig

    return StreamConfig(block_time=args.block_time, crossfade_time=args.crossfade_time,
                        extra_time=args.extra_time, sola_search_time=args.sola_search_time,
                        threshold_db=args.threshold, speaker=args.spk, transpose=args.trans,
                        cluster_infer_ratio=args.cluster_infer_ratio, f0_predictor=args.f0_predictor,
                        noise_scale=args.noice_scale, seed=args.seed,
                        whisper_window=args.whisper_window)  # fmt: skip


def check_modes(args: argparse.Namespace) -> None:
    """File mode and device mode flags that do not go together; file names (before any load)."""
    import soundfile as sf

    from inference.realtime.session import _check_rate

    file_mode = args.in_file is not None
    if not file_mode:
        for flag, value in (("--out_file", args.out_file), ("--report", args.report),
                            ("--as_fast_as_possible", args.as_fast_as_possible or None)):  # fmt: skip
            if value is not None:
                raise UsageError(
                    f"{flag}: only with --in_file (file mode)", "add --in_file <audio file>"
                )
        if args.samplerate is not None:
            _check_rate("--samplerate", args.samplerate)
        return
    for flag, value in (("--input", args.input), ("--output", args.output),
                        ("--samplerate", args.samplerate)):  # fmt: skip
        if value is not None:
            raise UsageError(f"{flag}: a sound card flag, not for file mode (--in_file)",
                             "the file's own rate is kept")  # fmt: skip
    if not os.path.isfile(args.in_file):
        what = "is a folder" if os.path.isdir(args.in_file) else "not found"
        raise InputError(f"--in_file {args.in_file}: {what}", "give an audio file")
    if args.out_file is None and args.report is None:
        raise UsageError("--in_file: give --out_file (the converted audio) and/or --report (JSON)")
    if args.out_file is not None:
        ext = os.path.splitext(args.out_file)[1].lstrip(".").upper()
        if ext not in sf.available_formats():
            raise UsageError(f"--out_file {args.out_file}: not a format soundfile writes",
                             "use .wav or .flac")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    if args.list_devices:
        from inference.realtime.devices import list_devices

        print(list_devices())
        return 0
    cfg = stream_config(args)
    check_modes(args)
    from inference.cli import require_f0, resolve_cluster_path, resolve_model_path

    require_f0(cfg.f0_predictor)
    if args.in_file is None:  # the sound cards before the (slow) model load
        from inference.realtime.devices import check_rate, find_device, import_sounddevice

        sd = import_sounddevice()
        di, do = find_device(sd, args.input, "input"), find_device(sd, args.output, "output")
        if args.samplerate is not None:
            check_rate(sd, di, "input", args.samplerate)
            check_rate(sd, do, "output", args.samplerate)
        args.input, args.output = di, do
    model_path = resolve_model_path(args.model_path)
    cluster_path = resolve_cluster_path(args.cluster_infer_ratio, args.cluster_model_path,
                                        args.feature_retrieval)  # fmt: skip
    from inference.infer_tool import Svc
    from inference.realtime import StreamEngine

    t0 = time.perf_counter()
    svc = Svc(model_path, args.config_path, args.device, cluster_path, False,
              feature_retrieval=args.feature_retrieval, precision=args.precision,
              backend=args.backend, onnx_model=args.onnx_model)  # fmt: skip
    engine = StreamEngine(svc, cfg)
    print(engine.latency_line(), flush=True)
    logger.info("model loaded in %.2f s (%s, %s, f0 %s)", time.perf_counter() - t0, args.precision,
                args.backend, cfg.f0_predictor)  # fmt: skip
    if args.in_file is None:
        from inference.realtime.devices import run_devices

        run_devices(engine, args.input, args.output, args.samplerate)
        return 0
    return file_mode(engine, args)


def file_mode(engine, args: argparse.Namespace) -> int:
    from common.atomic import write_text
    from common.audio import load_audio, save_audio
    from inference.realtime.filemode import stream_file

    wav, sr = load_audio(args.in_file)
    paced = not args.as_fast_as_possible
    logger.info("streaming %s (%.1f s at %d Hz)%s", args.in_file, len(wav) / sr, sr,
                " at real pace" if paced else " as fast as possible")  # fmt: skip
    out, report = stream_file(engine, wav, sr, paced=paced)
    if args.out_file is not None:
        save_audio(args.out_file, out, sr)
    c = report["compute_s"]
    ms = lambda v: "-" if v is None else f"{1000 * v:.1f}"  # noqa: E731
    print(f"{report['blocks']} blocks ({report['gated_blocks']} gated), {report['underruns']} "
          f"underruns; compute per block p50 {ms(c['p50'])} / p95 {ms(c['p95'])} / max {ms(c['max'])} ms "
          f"of a {1000 * report['block_s']:.1f} ms block; real-time factor "
          f"{report['realtime_factor']:.3f}", flush=True)  # fmt: skip
    if args.report is not None:
        import torch

        report["settings"] = {k: getattr(args, k) for k in (
            "model_path", "config_path", "spk", "trans", "f0_predictor", "cluster_infer_ratio",
            "noice_scale", "block_time", "crossfade_time", "extra_time", "sola_search_time",
            "threshold", "precision", "backend", "seed", "in_file", "out_file")}  # fmt: skip
        report["settings"]["speaker"] = engine.config.speaker
        report["threads"] = torch.get_num_threads()
        write_text(args.report, json.dumps(report, indent=1) + "\n")
    return 0
