"""Measure conversions: melody (F0 corr / RMSE / V-UV F1), speaker similarity, DNSMOS, CER/WER,
loudness-envelope correlation, loud source frames gone silent, clicks, and hop buzz (energy and
f0 at the decoder frame rate, quality/buzz.py), per file and on average (see quality/).

    python eval.py --manifest items.json --out DIR [--f0_predictor auto|fcpe|rmvpe|pm]
                   [--no_asr] [--no_dnsmos] [--no_plots] [--frame_rate HZ]
    python eval.py -o out1.flac out2.flac -s src1.wav src2.wav -t -12 --target_bank DIR
                   [--source_bank DIR] --out DIR

``--manifest``: a JSON list of items (quality/evaluate.py documents the fields). Writes
DIR/eval.json, DIR/eval_table.txt and PNG plots, and prints the table. Exit status 1 when any
file could not be evaluated (the others still are), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

MAX_SEMITONES = 48.0  # inference_main.py's -t range


def semitones(text: str) -> float:
    """``-t`` values: finite semitones within +-48 (argparse type; NaN/inf/huge refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of semitones") from None
    if not abs(value) <= MAX_SEMITONES:
        raise argparse.ArgumentTypeError(
            f"{text}: out of range; within +-{MAX_SEMITONES:g} semitones"
        )
    return value


def items_from_args(p: argparse.ArgumentParser, args) -> list:
    if args.manifest:
        if args.outputs or args.sources:
            p.error("give either --manifest or -o/-s, not both")
        try:
            items = json.loads(Path(args.manifest).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SystemExit(f"eval.py: {args.manifest}: cannot read the manifest ({e})") from None
        if not isinstance(items, list):
            raise SystemExit(f"eval.py: {args.manifest}: the manifest must be a JSON list of items")
        return items
    if not args.outputs or not args.sources:
        p.error("give --manifest, or the outputs (-o) and their sources (-s)")
    n = len(args.outputs)

    def per_output(values, flag):
        if len(values) not in (1, n):
            p.error(f"{flag}: give one value or one per output ({n}), not {len(values)}")
        return values * n if len(values) == 1 else values

    sources = per_output(args.sources, "-s/--sources")
    transposes = per_output(args.transpose, "-t/--transpose")
    items = []
    for out, src, t in zip(args.outputs, sources, transposes):
        item = {"output": out, "source": src, "transpose": t, "lang": args.lang}
        if args.target_bank:
            item["target_bank"] = args.target_bank
        if args.source_bank:
            item["source_bank"] = args.source_bank
        items.append(item)
    return items


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--manifest", help="JSON list of items (output, source, transpose, ...)")
    p.add_argument("-o", "--outputs", nargs="+", default=[], help="converted files")
    p.add_argument("-s", "--sources", nargs="+", default=[],
                   help="their sources: one per output, or one for all")  # fmt: skip
    p.add_argument("-t", "--transpose", nargs="+", type=semitones, default=[0.0],
                   help="semitones used in conversion: one value, or one per output")  # fmt: skip
    p.add_argument("--target_bank", help="folder of the target speaker's clips")
    p.add_argument(
        "--source_bank", help="folder of the source speaker's clips (default: the source)"
    )
    p.add_argument("--lang", default="en",
                   help="language of the sources (Whisper code: en, zh, ja, ko, ...; none: no "
                        "CER/WER): en by Whisper tiny.en, others by the multilingual base; zh/ja/"
                        "th...: CER on characters without spaces, no WER")  # fmt: skip
    p.add_argument("--out", required=True,
                   help="folder for eval.json, eval_table.txt, the PNGs (<output>.compare.png)")  # fmt: skip
    p.add_argument("--f0_predictor", default="auto",
                   help="auto (rmvpe if pretrain/rmvpe.pt exists, else fcpe), fcpe, rmvpe, pm, ...")  # fmt: skip
    p.add_argument("--no_asr", action="store_true", help="skip CER/WER (Whisper)")
    p.add_argument("--no_dnsmos", action="store_true", help="skip DNSMOS")
    p.add_argument("--no_plots", action="store_true", help="write no PNGs")
    p.add_argument("--frame_rate", type=float, default=None,
                   help="the model's sampling_rate / hop_length [Hz], where hop buzz is looked "
                        "for (default 44100 / 512 = 86.13; an item's frame_rate_hz wins)")  # fmt: skip
    args = p.parse_args(argv)
    items = items_from_args(p, args)

    from quality.buzz import DECODER_FRAME_RATE, check_frame_rate

    frame_rate = DECODER_FRAME_RATE if args.frame_rate is None else args.frame_rate
    try:
        check_frame_rate(frame_rate)
    except ValueError as e:
        p.error(f"--frame_rate: {e}")

    from quality.evaluate import EvalError, evaluate
    from quality.report import format_table

    try:
        report = evaluate(items, args.out, f0_predictor=args.f0_predictor, asr=not args.no_asr,
                          dnsmos=not args.no_dnsmos, plots=not args.no_plots,
                          frame_rate_hz=frame_rate)  # fmt: skip
    except EvalError as e:
        print(f"eval.py: {e}", file=sys.stderr)
        return 1
    print(format_table(report))
    print(f"written: {Path(args.out) / 'eval.json'}")
    pictures = sorted(Path(args.out).glob("*.compare.png")) if not args.no_plots else []
    if pictures:  # in --out (never beside the outputs: their folder may be read-only or shared)
        print(f"pictures: {Path(args.out)}/<output name>.compare.png ({len(pictures)})")
    failed = [f for f in report["files"] if "error" in f]
    for f in failed:
        print(f"eval.py: {f['error']}", file=sys.stderr)
    if failed:
        print(f"eval.py: {len(failed)} of {len(items)} files could not be evaluated",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
