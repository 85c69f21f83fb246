"""Realtime voice changer speed on this CPU (issue 22): the streaming engine in file mode.

    .venv/bin/python bench/realtime_speed.py [--seconds 300] [--configs template,demo]
        [--precisions fp32,bf16] [--f0 fcpe,rmvpe] [--paced] [--threads 2]
        [--out bench/results/realtime_speed.json]

Input: a real singing recording built from ``../shared/data`` (``--data``): vocadito_1, 10, 14
and sms-tools singing-female and vignesh, concatenated with 0.3 s pauses and repeated to
``--seconds`` (default 300 s); the JSON lists the seconds taken from each file. Without the data
the script says so and exits 0 (nothing to measure).

For each model config × precision × f0 predictor:

- the input streamed through ``inference.realtime.filemode.stream_file`` (the engine realtime.py
  drives) at ``--block_time``: per-block compute time p50 / p95 / p99 / max, and blocks over
  budget (underruns). Default: as fast as possible, an underrun = a block whose compute time
  exceeds the block time (it would not be ready when the sound card needs it); ``--paced``:
  the input is fed at real pace and an underrun is a block ready after its real-time deadline
  (the file mode's count, stream_file warms the engine up first);
- the algorithmic latency the engine reports (block + crossfade + SOLA search + look-ahead);
- the MEASURED latency: the stream's output located against the offline conversion of the same
  input (``Svc.slice_inference``, same model, speaker and seed; it has zero latency) by
  cross-correlation of their RMS envelopes (bench/realtime_common.py: 11.6 ms windows every
  2.9 ms, Pearson per lag, parabolic peak; ``corr`` is the peak's correlation, its confidence).
  File mode has no sound-card buffers: add the device's input + output buffer for a live setup.
  A peak correlation below 0.3 gives no figure ("n/a"): the random-init template model's output
  does not follow its input's loudness, so its latency is located only with ``--template_dir``
  (trained weights of the template size); the engine's buffering, and so its latency, is the
  same for every config at the same block time and hop;
- latency constancy: the same location in each 30 s window: min / max, and whether every window
  is within one block of the median (so-vits-svc-fork #742);
- the smallest block that holds 0 underruns: a walk over ``--search_blocks`` from the block time
  (down while it holds, else up) on the first ``--search_seconds`` (45 s) of the input.

Configs: ``template`` = preprocess_flist_config.py's default (config_template.json, vec768l12,
random-init synthesizer; ContentVec from pretrain/ or random-init of the real size: speed does
not depend on the weights' values), ``demo`` = the shipped small demo voice (pretrain/demo_voice,
whisper-ppg-ct2 units, trained). F0: ``fcpe`` (ships with the install) and ``rmvpe`` (4.1's
preprocessing default, 92 M parameters; pretrain/rmvpe.pt when present, else a random-init RMVPE of
the real size: the JSON says which). Ratios (bf16 / fp32, rmvpe / fcpe p50 compute) are within
this run only.

Results: a table on stdout and JSON in ``--out``; machine, threads, torch version, load average
before and after. Develop with ``--seconds 10``; the full 5-minute run is for a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common.errors import InputError, UsageError  # noqa: E402

SR = 44100
CONFIGS = ("template", "demo")
PRECISIONS = ("fp32", "bf16")
F0S = ("fcpe", "rmvpe")
SEARCH_BLOCKS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0)
WINDOW_S = 30.0


def parse_list(text: str, allowed, flag: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    for t in items:
        if t not in allowed:
            raise UsageError(f"{flag}: unknown {what} {t!r} (choose from {', '.join(allowed)})")
    if not items:
        raise UsageError(f"{flag}: empty list (choose from {', '.join(allowed)})")
    return items


def positive(flag: str, value: float) -> float:
    if not value > 0:
        raise UsageError(f"{flag}: must be > 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=float, default=300.0, help="input length (s)")
    p.add_argument("--configs", default="template,demo", help="template, demo")
    p.add_argument("--precisions", default="fp32,bf16", help="fp32, bf16")
    p.add_argument("--f0", default="fcpe,rmvpe", help="fcpe, rmvpe")
    p.add_argument("--paced", action="store_true", help="feed the input at real pace")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--block_time", type=float, default=None,
                   help="block time (s); default: the engine's StreamConfig default")  # fmt: skip
    p.add_argument("--search_blocks", default=",".join(map(str, SEARCH_BLOCKS)),
                   help="block times (s) of the smallest-block search")  # fmt: skip
    p.add_argument("--search_seconds", type=float, default=45.0,
                   help="excerpt length of the smallest-block search (s)")  # fmt: skip
    p.add_argument("--no_search", action="store_true", help="skip the smallest-block search")
    p.add_argument("--whisper_window", choices=["short", "30s"], default="short",
                   help="what a Whisper encoder encodes per block (realtime.py's flag)")  # fmt: skip
    p.add_argument("--template_dir", default=None,
                   help="a trained template-size model (folder: one *.pth + config.json) instead "
                        "of the random-init one (its measured latency can then be located)")  # fmt: skip
    p.add_argument("--seed", type=int, default=52468)
    p.add_argument("--data", default=None, help="the shared data folder (default ../shared/data)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "realtime_speed.json"))
    return p


def check_args(args) -> None:
    args.configs = parse_list(args.configs, CONFIGS, "--configs", "config")
    args.precisions = parse_list(args.precisions, PRECISIONS, "--precisions", "precision")
    args.f0 = parse_list(args.f0, F0S, "--f0", "f0 predictor")
    positive("--seconds", args.seconds)
    positive("--search_seconds", args.search_seconds)
    if args.threads < 1:
        raise UsageError(f"--threads: must be >= 1, got {args.threads}")
    if args.block_time is not None:
        positive("--block_time", args.block_time)
    if args.template_dir is not None and not Path(args.template_dir).is_dir():
        raise InputError(f"{args.template_dir}: --template_dir folder not found")
    try:
        args.search_blocks = [positive("--search_blocks", float(x))
                              for x in args.search_blocks.split(",") if x.strip()]  # fmt: skip
    except ValueError:
        raise UsageError(
            f"--search_blocks: not a list of seconds: {args.search_blocks!r}"
        ) from None


# ------------------------------------------------------------------------------------ running
def make_engine(svc, speaker: str, f0: str, seed: int, block_time: float | None,
                whisper_window: str = "short"):  # fmt: skip
    from inference.realtime import StreamConfig, StreamEngine

    kw = {} if block_time is None else {"block_time": block_time}
    return StreamEngine(svc, StreamConfig(speaker=speaker, f0_predictor=f0, seed=seed,
                                          whisper_window=whisper_window, **kw))  # fmt: skip


def stream(engine, wav, paced: bool):
    """``stream_file`` of the engine (it warms the engine up and resets it first):
    ``(output float32 [L], report dict, per-block compute times [s])``."""
    from inference.realtime.filemode import stream_file

    out, report = stream_file(engine, wav, SR, paced)
    return out, report, list(engine.stats["compute_s"])


def run_case(svc, speaker: str, f0: str, wav, args) -> dict:
    """One config × precision × f0: the stream, its block timing, the located latency against
    the offline conversion, per-window constancy and the smallest-block search."""
    from bench import realtime_common as rc

    engine = make_engine(svc, speaker, f0, args.seed, args.block_time, args.whisper_window)
    block_s = engine.block_samples / SR
    out, report, compute = stream(engine, wav, args.paced)
    stats = rc.block_stats(compute, block_s)
    model = report["compute_model_s"]
    res = {"block_s": block_s, "latency_algorithmic_s": float(engine.latency_s), **stats,
           # the file mode's count: a block's output later than its deadline (see module doc)
           "underruns": report["underruns"], "blocks_compute_over_block": stats["underruns"],
           "model_blocks": report["model_calls"], "gated_blocks": report["gated_blocks"],
           "model_p50_ms": None if model["p50"] is None else 1000 * model["p50"],
           "model_p99_ms": None if model["p99"] is None else 1000 * model["p99"],
           "stream_wall_s": report["wall_s"], "engine_rtf": report["realtime_factor"]}  # fmt: skip
    t0 = time.perf_counter()
    offline = svc.slice_inference(wav, speaker, 0, -40, 0, False, 0.4, f0_predictor=f0,
                                  seed=args.seed)  # fmt: skip
    res["offline_s"] = time.perf_counter() - t0
    max_delay = max(1.5, 2 * engine.latency_s + 0.5)
    loc = rc.locate_delay(offline, out, SR, max_delay)
    res["latency_measured_s"], res["latency_corr"] = loc["delay_s"], loc["corr"]
    windows = rc.window_delays(offline, out, SR, WINDOW_S, max_delay)
    res["latency_windows"] = windows
    res["latency_constancy"] = rc.constancy(windows, block_s)
    if not args.no_search:
        excerpt = wav[: int(min(args.search_seconds, len(wav) / SR) * SR)]

        def underruns_at(b: float) -> int:
            engine = make_engine(svc, speaker, f0, args.seed, b, args.whisper_window)
            return stream(engine, excerpt, args.paced)[1]["underruns"]

        res["smallest_block"] = rc.smallest_block(underruns_at, args.search_blocks, block_s)
    return res


def ratios(cases: list[dict]) -> dict:
    """p50 compute bf16 / fp32 (same config and f0) and rmvpe / fcpe (same config and precision)."""
    by = {(c["config"], c["precision"], c["f0"]): c["p50_ms"] for c in cases}
    out = {}
    for (cfg, prec, f0), v in by.items():
        if prec == "bf16" and (cfg, "fp32", f0) in by and v and by[(cfg, "fp32", f0)]:
            out[f"{cfg} {f0}: bf16 / fp32"] = v / by[(cfg, "fp32", f0)]
        if f0 == "rmvpe" and (cfg, prec, "fcpe") in by and v and by[(cfg, prec, "fcpe")]:
            out[f"{cfg} {prec}: rmvpe / fcpe"] = v / by[(cfg, prec, "fcpe")]
    return out


def fmt(v, scale: float = 1.0, spec: str = ".0f") -> str:
    return "n/a" if v is None else format(v * scale, spec)


def ms(v) -> str:
    """Seconds → ``"123 ms"``; ``"n/a"`` for ``None``."""
    return "n/a" if v is None else f"{v * 1000:.0f} ms"


def print_table(cases: list[dict]) -> None:
    print("config    prec  f0     block    p50    p95    p99    max  under/blocks  algo lat  "
          "measured (corr)  30 s windows min–max  ±1 block  smallest block")  # fmt: skip
    for c in cases:
        lc = c["latency_constancy"]
        sb = c.get("smallest_block")
        sb = "n/a" if sb is None else (ms(sb["smallest_s"]) if sb["smallest_s"] else "none held")
        steady = {True: "yes", False: "NO", None: "n/a"}[lc["within_one_block"]]
        windows = "n/a" if lc["min_s"] is None else f"{ms(lc['min_s'])}–{ms(lc['max_s'])}"
        print(f"{c['config']:9s} {c['precision']:5s} {c['f0']:6s} {ms(c['block_s']):>6s} "
              f"{fmt(c['p50_ms']):>6s} {fmt(c['p95_ms']):>6s} {fmt(c['p99_ms']):>6s} {fmt(c['max_ms']):>6s}"
              f"  {c['underruns']:5d}/{c['blocks']:<6d} {ms(c['latency_algorithmic_s']):>8s}"
              f"  {ms(c['latency_measured_s']):>7s} ({fmt(c['latency_corr'], 1, '.2f')})"
              f"  {windows:>20s}  {steady:>8s}  {sb}", flush=True)  # fmt: skip
    print("(compute per block in ms; underruns: see underrun_rule in the JSON; measured: the stream "
          "located against the offline conversion, n/a below envelope corr 0.3)")  # fmt: skip


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    from bench import realtime_common as rc

    data = rc.find_data(args.data)
    if data is None:
        print(f"realtime_speed: no recordings to stream: {args.data or '../shared/data'} not found "
              "(the bench needs ../shared/data: vocadito / sms-tools singing); nothing measured")  # fmt: skip
        return 0
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    wav, segments = rc.build_input(data, args.seconds)
    res = {"machine": rc.machine(args.threads), "input": {
        "seconds": len(wav) / SR, "data": str(data), "files_s": rc.files_used(segments),
        "built": "files concatenated with 0.3 s pauses, repeated to the length"},
        "paced": args.paced, "whisper_window": args.whisper_window, "latency_method": (
            "stream output located against Svc.slice_inference of the same input (zero latency) "
            "by Pearson cross-correlation of 11.6 ms RMS envelopes every 2.9 ms, parabolic peak; "
            "file mode: no sound-card buffers included"),
        "underrun_rule": "a block's output ready after its real-time deadline (k + 1)·block"
        if args.paced else "a block's output ready more than one block time after the previous "
        "one's (compute > block time, as fast as possible)", "cases": []}  # fmt: skip
    m = res["machine"]
    print(f"torch {m['torch']}, {args.threads} threads, {m['cpu'].get('cpu')}, load average "
          f"{m['loadavg_before']}; input {len(wav) / SR:.0f} s from {', '.join(res['input']['files_s'])}"
          f" ({'paced' if args.paced else 'as fast as possible'})", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="realtime_speed_") as tmp:
        work = Path(tmp)
        pre = rc.pretrain_folder(work)
        res["sources"] = {"rmvpe": rc.ensure_rmvpe(pre)} if "rmvpe" in args.f0 else {}
        for cfg in args.configs:
            if cfg == "demo":
                spec = rc.model_folder()
            elif args.template_dir:
                spec = rc.model_folder(Path(args.template_dir))
            else:
                spec = rc.template_model(work, pre)
            res["sources"][cfg] = spec["sources"]
            for prec in args.precisions:
                svc = rc.load_svc(spec, prec, pre)
                for f0 in args.f0:
                    print(f"== {cfg} {prec} {f0}", flush=True)
                    t0 = time.perf_counter()
                    case = {"config": cfg, "precision": prec, "f0": f0,
                            **run_case(svc, spec["speakers"][0], f0, wav, args)}  # fmt: skip
                    res["cases"].append(case)
                    print_case(case, time.perf_counter() - t0)
                    save(res, out)  # after every case: an interrupted run keeps what it measured
                del svc
    res["ratios_p50"] = ratios(res["cases"])
    res["machine"]["loadavg_after"] = list(os.getloadavg())
    print_table(res["cases"])
    for k, v in res["ratios_p50"].items():
        print(f"  p50 compute {k}: {v:.2f}")
    print(f"load average before {m['loadavg_before']}, after {m['loadavg_after']}")
    save(res, out)
    print(f"wrote {out}")
    return 0


def save(res: dict, out: Path) -> None:
    from common.atomic import write_text

    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, json.dumps(res, indent=2, default=float) + "\n")


def print_case(c: dict, took: float) -> None:
    sb = c.get("smallest_block")
    tried = (
        ", ".join(f"{b * 1000:.0f} ms: {u}" for b, u in sorted(sb["tried"].items()))
        if sb
        else "off"
    )
    print(f"   stream {c['stream_wall_s']:.1f} s (engine RTF {c['engine_rtf']:.2f}), offline "
          f"{c['offline_s']:.1f} s, {c['underruns']} underruns / {c['blocks']} blocks "
          f"({c['model_blocks']} ran the model); block search (underruns per block) {tried}; "
          f"case took {took:.0f} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    from common.cli import run_main

    sys.exit(run_main(main))
