"""The quality recipe's curve: per-kind metrics after each evaluation, their spread over the last
evaluations (F0 corr stability), the printed curve table (bench/quality_recipe.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

SPREAD_N = 5
"""The curve's F0 corr spread is taken over this many evaluations: the newest and those before."""
CURVE_METRICS = ("f0_corr", "secs_target", "secs_source", "hop_buzz_db", "f0_on_frame_rate",
                 "loud_silent")  # fmt: skip
"""eval.py metrics averaged per kind (self, cross) into each curve row as ``<kind>_<metric>``."""
# (key, header, format) of the printed curve table.
CURVE_COLUMNS = (("step", "step", "{:d}"), ("cpu_minutes", "CPU min", "{:.1f}"),
                 ("self_f0_corr", "F0 self", "{:.3f}"), ("cross_f0_corr", "F0 cross", "{:.3f}"),
                 ("self_f0_corr_spread5", "spr5 self", "{:.3f}"),
                 ("cross_f0_corr_spread5", "spr5 cros", "{:.3f}"),
                 ("cross_secs_target", "SECS tgt", "{:.3f}"),
                 ("cross_secs_source", "SECS src", "{:.3f}"),
                 ("self_hop_buzz_db", "buzz self", "{:+.1f}"),
                 ("cross_hop_buzz_db", "buzz cros", "{:+.1f}"),
                 ("self_f0_on_frame_rate", "f0@fr self", "{:.1%}"),
                 ("cross_f0_on_frame_rate", "f0@fr cros", "{:.1%}"),
                 ("self_loud_silent", "l→s self", "{:.1%}"),
                 ("cross_loud_silent", "l→s cross", "{:.1%}"))  # fmt: skip


def as_number(value) -> float | None:
    """``value`` as a float, ``None`` for a missing or NaN value."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def spread(values, n: int = SPREAD_N) -> float | None:
    """Max − min of the last ``n`` entries of ``values`` (oldest first), skipping missing ones
    (``None``/NaN: an evaluation with no score); ``None`` with fewer than 2 numbers among them.
    E.g. ``spread([0.98, 0.90, 0.86, 0.95, 0.79, 0.93])`` = 0.95 − 0.79 = 0.16."""
    last = [v for v in map(as_number, list(values)[-n:]) if v is not None]
    return max(last) - min(last) if len(last) >= 2 else None


def read_curve(path: Path) -> list[dict]:
    """The rows of ``curve.jsonl`` by step (an empty list when there is none yet)."""
    if not path.is_file():
        return []
    rows = [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return sorted(rows, key=lambda r: r["step"])


def with_spread(previous: list[dict], row: dict, n: int = SPREAD_N) -> dict:
    """``row`` plus ``self_f0_corr_spread5`` / ``cross_f0_corr_spread5``: :func:`spread` of the
    F0 corr over the rows of ``previous`` before ``row``'s step and ``row`` itself."""
    earlier = [r for r in previous if r["step"] < row["step"]]
    out = dict(row)
    for kind in ("self", "cross"):
        key = f"{kind}_f0_corr"
        out[f"{key}_spread{n}"] = spread([r.get(key) for r in earlier] + [row.get(key)], n)
    return out


def format_curve(rows: list[dict]) -> str:
    """The curve as a plain-text table (:data:`CURVE_COLUMNS`; ``-`` for a missing value)."""

    def cell(value, fmt):
        value = value if isinstance(value, int) else as_number(value)
        return "-" if value is None else fmt.format(value)

    lines = [" ".join(f"{h:>10s}" for _, h, _ in CURVE_COLUMNS)]
    lines += [" ".join(f"{cell(r.get(k), fmt):>10s}" for k, _, fmt in CURVE_COLUMNS) for r in rows]
    return "\n".join(lines)
