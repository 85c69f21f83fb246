"""Aggregate and print an evaluation: the means of every metric and a plain-text table."""

from __future__ import annotations

import numpy as np

METRICS = ("f0_corr", "f0_rmse_cents", "vuv_f1", "secs_target", "secs_source", "dnsmos_ovrl",
           "dnsmos_sig", "dnsmos_bak", "cer", "wer", "loudness_corr", "clicks", "hop_buzz_db",
           "f0_on_frame_rate", "loud_silent")  # fmt: skip
"""Metric keys of each file entry, averaged into ``aggregate`` (see :mod:`quality`)."""

# (key, header, format) of the printed table's columns.
COLUMNS = (
    ("f0_corr", "F0 corr", "{:.3f}"),
    ("f0_rmse_cents", "F0 RMSE¢", "{:.0f}"),
    ("vuv_f1", "V/UV F1", "{:.3f}"),
    ("secs_target", "SECS tgt", "{:.3f}"),
    ("secs_source", "SECS src", "{:.3f}"),
    ("dnsmos_ovrl", "DNSMOS", "{:.2f}"),
    ("cer", "CER", "{:.1%}"),
    ("wer", "WER", "{:.1%}"),
    ("loudness_corr", "loud corr", "{:.3f}"),
    ("clicks", "clicks", "{:.1f}"),
    ("hop_buzz_db", "buzz dB", "{:+.1f}"),
    ("f0_on_frame_rate", "f0@frame", "{:.1%}"),
    ("loud_silent", "loud→sil", "{:.1%}"),
)


def aggregate(files: list[dict]) -> dict:
    """Mean of each metric over the files that have it (``None`` when none has), plus counts."""
    ok = [f for f in files if "error" not in f]
    out: dict = {"files": len(ok), "failed": len(files) - len(ok)}
    for key in METRICS:
        values = [f[key] for f in ok if f.get(key) is not None]
        out[key] = float(np.mean(values)) if values else None
    return out


def short_name(name: str, width: int = 28) -> str:
    """``name`` cut to ``width`` characters in the middle (start and end tell files apart)."""
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return name[:head] + "…" + name[len(name) - (width - 1 - head) :]


def _cell(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def format_table(report: dict, name_width: int = 28) -> str:
    """The per-file rows, then the mean row, then the models used."""
    header = f"{'file':{name_width}s} " + " ".join(f"{h:>9s}" for _, h, _ in COLUMNS)
    lines = [header, "-" * len(header)]
    for f in report["files"]:
        name = short_name(f["name"], name_width)
        if "error" in f:
            lines.append(f"{name:{name_width}s} ERROR: {f['error']}")
            continue
        lines.append(f"{name:{name_width}s} "
                     + " ".join(f"{_cell(f.get(k), fmt):>9s}" for k, _, fmt in COLUMNS))  # fmt: skip
    agg = report["aggregate"]
    lines.append("-" * len(header))
    lines.append(f"{'mean (' + str(agg['files']) + ' files)':{name_width}s} "
                 + " ".join(f"{_cell(agg.get(k), fmt):>9s}" for k, _, fmt in COLUMNS))  # fmt: skip
    meta = report["meta"]
    lines.append(f"f0: {meta['f0_predictor']} | speaker: {meta['speaker_encoder']} | "
                 f"MOS: {meta['dnsmos']} | ASR: {meta['asr']} | {meta['elapsed_s']:.1f} s")  # fmt: skip
    return "\n".join(lines)
