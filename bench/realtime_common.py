"""Shared pieces of ``bench/realtime_speed.py`` and ``bench/realtime_quality.py`` (issue 22).

- :func:`build_input`: the real singing input, recordings of ``../shared/data`` concatenated;
- :func:`locate_delay` / :func:`window_delays`: the measured delay of the stream's output against
  the offline conversion of the same input (which has zero latency), by cross-correlation of
  their RMS envelopes (method below);
- :func:`block_stats`, :func:`smallest_block`: per-block compute statistics and the search for the
  smallest block that holds 0 underruns;
- :func:`template_model`, :func:`model_folder`, :func:`pretrain_folder`: the models the benches load.

Delay method. Both outputs are reduced to RMS envelopes in dB (``frame`` samples every ``hop``,
default 512 / 128 at 44.1 kHz: 11.6 ms windows every 2.9 ms, floor 60 dB below the loudest
frame). For every lag ``k`` in ``[-max_delay, max_delay]`` the Pearson correlation of
``ref_env[i]`` and ``y_env[i + k]`` over their overlap is computed (one FFT for the cross sums,
cumulative sums for the per-lag means and variances); the best lag is refined by a parabola
through its neighbours. A positive delay means ``y`` comes later than ``ref``. The peak
correlation is returned with it; below :data:`MIN_CORR` (silence, unrelated signals) no delay is
reported. Singing has note onsets and pauses every few hundred ms, so the peak is sharp;
the two outputs' waveforms are not compared (the stream and the offline conversion need not be
in phase), only their loudness contours.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SR = 44100
"""The models' sample rate [Hz]; every wav here is float32 mono at this rate."""

SINGING_FILES = (
    "vocadito/vocadito_1.wav",
    "vocadito/vocadito_10.wav",
    "vocadito/vocadito_14.wav",
    "sms-tools/singing-female.wav",
    "sms-tools/vignesh.wav",
)
"""The singing recordings of ``../shared/data`` the input is built from (in this order, repeated);
the speech files and the 1.2 s single note (sms-tools/soprano-E4.wav) are left out."""
GAP_S = 0.3
"""Silence between two recordings [s] (phrases start and stop, the silence gate has work)."""
FADE_S = 0.01
"""Fade in/out at each recording's ends [s], so the joins of the input are not clicks."""

ENV_HOP = 128
"""Envelope hop [samples at 44.1 kHz] of the delay locator: 2.9 ms."""
ENV_FRAME = 512
"""Envelope window [samples at 44.1 kHz]: 11.6 ms (one model hop)."""
ENV_FLOOR_DB = 60.0
"""Envelope frames quieter than the loudest minus this are raised to it."""
MIN_CORR = 0.3
"""A delay whose envelope correlation peaks below this is not reported (unrelated envelopes: a
random-init model's output does not follow its input's loudness, e.g.)."""


# ------------------------------------------------------------------------------------ input
def find_data(explicit: str | os.PathLike | None = None) -> Path | None:
    """``explicit``, else the first ``shared/data`` folder next to or above the checkout
    (``../shared/data``, ``../../shared/data``, ``./shared/data``); ``None`` when there is none."""
    if explicit is not None:
        return Path(explicit) if Path(explicit).is_dir() else None
    for base in (ROOT.parent, ROOT.parent.parent, ROOT):
        if (base / "shared" / "data").is_dir():
            return base / "shared" / "data"
    return None


def build_input(data: Path, seconds: float, sr: int = SR) -> tuple[np.ndarray, list[dict]]:
    """The recordings of :data:`SINGING_FILES` found under ``data`` (mono, resampled to ``sr``,
    10 ms fades), separated by :data:`GAP_S` of silence and repeated until ``seconds``.

    Returns ``(wav float32 [round(seconds·sr)], segments)``; each segment is
    ``{"file", "start_s", "seconds"}`` (where that recording sits in the input). Raises
    ``FileNotFoundError`` when none of the files is there.
    """
    from common.audio import load_audio

    clips = []
    for rel in SINGING_FILES:
        if (data / rel).is_file():
            wav, _ = load_audio(data / rel, sr)
            fade = min(int(FADE_S * sr), len(wav) // 2)
            ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
            wav = wav.astype(np.float32, copy=True)
            wav[:fade] *= ramp
            wav[len(wav) - fade :] *= ramp[::-1]
            clips.append((rel, wav))
    if not clips:
        raise FileNotFoundError(f"{data}: none of {', '.join(SINGING_FILES)}")
    n = int(round(seconds * sr))
    gap = np.zeros(int(GAP_S * sr), np.float32)
    parts, segments, pos, i = [], [], 0, 0
    while pos < n:
        rel, wav = clips[i % len(clips)]
        take = min(len(wav), n - pos)
        parts.append(wav[:take])
        segments.append({"file": rel, "start_s": pos / sr, "seconds": take / sr})
        pos += take
        if pos < n:
            parts.append(gap[: n - pos])
            pos += min(len(gap), n - pos)
        i += 1
    return np.concatenate(parts), segments


def files_used(segments: list[dict]) -> dict[str, float]:
    """Seconds of each recording in the input (repeats counted)."""
    out: dict[str, float] = {}
    for s in segments:
        out[s["file"]] = out.get(s["file"], 0.0) + s["seconds"]
    return out


# ------------------------------------------------------------------------------- delay locator
def envelope_db(wav: np.ndarray, frame: int = ENV_FRAME, hop: int = ENV_HOP) -> np.ndarray:
    """RMS in dB of ``frame`` samples centred on ``i·hop`` (zero padded), ``[len(wav) // hop]``,
    floored at ``max − ENV_FLOOR_DB`` (cumulative sums: memory O(len(wav)))."""
    x = np.asarray(wav, dtype=np.float64)
    n = len(x) // hop
    if n == 0:
        return np.zeros(0)
    c = np.concatenate([[0.0], np.cumsum(np.pad(x, (frame // 2, frame // 2)) ** 2)])
    start = np.arange(n) * hop
    db = 10.0 * np.log10(np.maximum((c[start + frame] - c[start]) / frame, 1e-12))
    return np.maximum(db, db.max() - ENV_FLOOR_DB)


def lagged_pearson(a: np.ndarray, b: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of ``a[i]`` and ``b[i + k]`` over their overlap, for every lag
    ``k`` in ``[-max_lag, max_lag]``; ``a`` and ``b`` are cut to the shorter. Returns
    ``(lags [2·max_lag + 1], r [same])``; ``r`` is NaN where an overlap is flat."""
    n = min(len(a), len(b))
    max_lag = int(min(max_lag, n - 3))
    if max_lag < 0:
        return np.zeros(0, np.int64), np.zeros(0)
    a = np.asarray(a[:n], np.float64)
    b = np.asarray(b[:n], np.float64)
    a = a - a.mean()
    b = b - b.mean()
    size = 1 << int(np.ceil(np.log2(2 * n)))
    cross = np.fft.irfft(np.conj(np.fft.rfft(a, size)) * np.fft.rfft(b, size), size)
    lags = np.arange(-max_lag, max_lag + 1)
    sab = cross[lags % size]  # sum_i a[i] b[i + k]
    ca = np.concatenate([[0.0], np.cumsum(a)])
    caa = np.concatenate([[0.0], np.cumsum(a * a)])
    cb = np.concatenate([[0.0], np.cumsum(b)])
    cbb = np.concatenate([[0.0], np.cumsum(b * b)])
    a_lo, a_hi = np.maximum(0, -lags), n - np.maximum(0, lags)
    b_lo, b_hi = np.maximum(0, lags), n - np.maximum(0, -lags)
    m = (a_hi - a_lo).astype(np.float64)
    sa, saa = ca[a_hi] - ca[a_lo], caa[a_hi] - caa[a_lo]
    sb, sbb = cb[b_hi] - cb[b_lo], cbb[b_hi] - cbb[b_lo]
    cov = m * sab - sa * sb
    var = (m * saa - sa**2) * (m * sbb - sb**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(var > 1e-12 * m**4, cov / np.sqrt(np.maximum(var, 1e-300)), np.nan)
    return lags, r


def locate_delay(ref: np.ndarray, y: np.ndarray, sr: int = SR, max_delay_s: float = 1.5,
                 hop: int = ENV_HOP, frame: int = ENV_FRAME) -> dict:  # fmt: skip
    """Where ``y`` sits against ``ref`` (both mono at ``sr``): ``{"delay_s", "delay_samples",
    "corr"}`` (see the module doc); ``delay_s`` > 0: ``y`` is later. ``delay_s`` is ``None``
    when no lag has a defined correlation (a silent or flat input) or the best one is below
    :data:`MIN_CORR` (the envelopes are unrelated: a number would be a guess); ``corr`` is
    still given then."""
    ea, eb = envelope_db(ref, frame, hop), envelope_db(y, frame, hop)
    lags, r = lagged_pearson(ea, eb, int(np.ceil(max_delay_s * sr / hop)))
    if len(r) == 0 or not np.any(np.isfinite(r)):
        return {"delay_s": None, "delay_samples": None, "corr": None}
    j = int(np.nanargmax(r))
    frac = 0.0
    if 0 < j < len(r) - 1 and np.isfinite(r[j - 1]) and np.isfinite(r[j + 1]):
        den = r[j - 1] - 2 * r[j] + r[j + 1]
        if den < 0:
            frac = float(np.clip(0.5 * (r[j - 1] - r[j + 1]) / den, -0.5, 0.5))
    if r[j] < MIN_CORR:
        return {"delay_s": None, "delay_samples": None, "corr": float(r[j])}
    delay = (lags[j] + frac) * hop
    return {"delay_s": float(delay / sr), "delay_samples": int(round(delay)), "corr": float(r[j])}


def window_delays(ref: np.ndarray, y: np.ndarray, sr: int = SR, window_s: float = 30.0,
                  max_delay_s: float = 1.5) -> list[dict]:  # fmt: skip
    """:func:`locate_delay` in each ``window_s`` window of ``ref`` (the same span of ``y``; a
    last window shorter than half a window is merged into the one before):
    ``[{"start_s", "seconds", "delay_s", "corr"}]``."""
    n, w = min(len(ref), len(y)), int(window_s * sr)
    starts = list(range(0, max(n - w // 2, 1), w))
    out = []
    for k, s in enumerate(starts):
        e = n if k == len(starts) - 1 else s + w
        d = locate_delay(ref[s:e], y[s:e], sr, max_delay_s)
        out.append({"start_s": s / sr, "seconds": (e - s) / sr, "delay_s": d["delay_s"],
                    "corr": d["corr"]})  # fmt: skip
    return out


def constancy(windows: list[dict], block_s: float) -> dict:
    """Min / max / spread of the located per-window delays [s] and whether the spread stays
    within ± one block (the issue's goal: max − min ≤ 2 blocks and every window within one block
    of the median). Windows with no delay are counted in ``unlocated``."""
    d = np.array([w["delay_s"] for w in windows if w["delay_s"] is not None], np.float64)
    if len(d) == 0:
        return {"min_s": None, "max_s": None, "spread_s": None, "within_one_block": None,
                "windows": len(windows), "unlocated": len(windows)}  # fmt: skip
    med = float(np.median(d))
    return {"min_s": float(d.min()), "max_s": float(d.max()), "spread_s": float(d.max() - d.min()),
            "within_one_block": bool(np.all(np.abs(d - med) <= block_s + 1e-9)),
            "windows": len(windows), "unlocated": len(windows) - len(d)}  # fmt: skip


def align(y: np.ndarray, delay_samples: int, n: int) -> np.ndarray:
    """``y`` moved ``delay_samples`` earlier (later when negative), zero padded / cut to ``n``."""
    y = np.asarray(y, np.float32)
    out = np.zeros(n, np.float32)
    d = int(delay_samples)
    src = y[d:] if d >= 0 else np.concatenate([np.zeros(-d, np.float32), y])
    m = min(n, len(src))
    out[:m] = src[:m]
    return out


# ------------------------------------------------------------------------------ block timing
def block_stats(compute_s, block_s: float) -> dict:
    """``compute_s``: per-block compute times [s] → ``{"blocks", "p50_ms", "p95_ms", "p99_ms",
    "max_ms", "mean_ms", "underruns", "budget_ms"}``; an underrun is a block whose compute time
    exceeds the block time ``block_s`` (it would not be ready when the device needs it)."""
    t = np.asarray(list(compute_s), np.float64)
    if len(t) == 0:
        return {"blocks": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None,
                "mean_ms": None, "underruns": 0, "budget_ms": 1000 * block_s}  # fmt: skip
    p50, p95, p99 = np.percentile(t, [50, 95, 99]) * 1000
    return {"blocks": len(t), "p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99),
            "max_ms": float(t.max() * 1000), "mean_ms": float(t.mean() * 1000),
            "underruns": int(np.sum(t > block_s)), "budget_ms": 1000 * block_s}  # fmt: skip


def smallest_block(underruns_at, candidates, start: float) -> dict:
    """The smallest block time of ``candidates`` [s] that holds 0 underruns, by a walk from
    ``start``: down while a block holds, else up until one does (each tried once).

    ``underruns_at(block_s) -> int`` runs the stream and counts underruns. Returns
    ``{"smallest_s": float | None, "tried": {block_s: underruns}}``; ``None`` when none held."""
    c = sorted({float(x) for x in candidates})
    if not c:
        return {"smallest_s": None, "tried": {}}
    i = int(np.argmin([abs(x - start) for x in c]))
    tried: dict[float, int] = {}

    def ok(k):
        if c[k] not in tried:
            tried[c[k]] = int(underruns_at(c[k]))
        return tried[c[k]] == 0

    if ok(i):
        while i > 0 and ok(i - 1):
            i -= 1
        return {"smallest_s": c[i], "tried": tried}
    while i < len(c) - 1:
        i += 1
        if ok(i):
            return {"smallest_s": c[i], "tried": tried}
    return {"smallest_s": None, "tried": tried}


# ------------------------------------------------------------------------------------ models
def pretrain_folder(work: Path) -> Path:
    """``work/pretrain`` holding links to everything in the repository's ``pretrain/`` (so files
    written here, e.g. a random-init ``rmvpe.pt``, never land in ``pretrain/``); ``SOVITS_PRETRAIN``
    is pointed at it, where the f0 predictors look for their weights."""
    pre = work / "pretrain"
    pre.mkdir(parents=True, exist_ok=True)
    for p in (ROOT / "pretrain").iterdir():
        if not (pre / p.name).exists():
            os.symlink(p, pre / p.name)
    os.environ["SOVITS_PRETRAIN"] = str(pre)
    return pre


def ensure_rmvpe(pre: Path) -> str:
    """``pre/rmvpe.pt``: the real file when ``pretrain/rmvpe.pt`` exists, else a random-init RMVPE
    of the real size and format (E2E0(4, 1, (2, 2)), as so-vits-svc 4.1 builds it). Returns where
    it came from (for the results)."""
    if (pre / "rmvpe.pt").exists():
        return "pretrain/rmvpe.pt (real weights)"
    import torch

    from modules.f0.rmvpe import E2E0

    torch.manual_seed(0)
    torch.save({"model": E2E0(4, 1, (2, 2)).state_dict()}, pre / "rmvpe.pt")
    return "random-init RMVPE E2E0(4, 1, (2, 2)) (real size; pretrain/rmvpe.pt is not shipped)"


def template_model(work: Path, pre: Path) -> dict:
    """The template config (preprocess_flist_config.py's default: config_template.json with
    vec768l12, 2 speakers) with a random-init synthesizer; the ContentVec encoder from
    ``pretrain/checkpoint_best_legacy_500.pt`` or a random-init one of the real size.
    Returns ``{"model", "config", "speakers", "sources"}``."""
    import json

    import torch

    from common.checkpoint import save_checkpoint
    from models import SynthesizerTrn
    from preprocess.flist_config import make_config

    folder = work / "template"
    folder.mkdir(parents=True, exist_ok=True)
    cfg = make_config({"spk0": 0, "spk1": 1}, "vec768l12", False, False)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    torch.manual_seed(0)
    net = SynthesizerTrn(cfg["data"]["filter_length"] // 2 + 1,
                         cfg["train"]["segment_size"] // cfg["data"]["hop_length"], **cfg["model"])  # fmt: skip
    save_checkpoint(net, None, 1e-4, 0, folder / "G_0.pth")
    sources = {"synthesizer": "random-init (template size)"}
    if (pre / "checkpoint_best_legacy_500.pt").exists():
        sources["encoder"] = "pretrain/checkpoint_best_legacy_500.pt"
    else:
        from tests.vencoder_checkpoints import reference_json, write_fairseq_hubert

        ref = reference_json("checkpoint_best_legacy_500.json")
        write_fairseq_hubert(pre / "checkpoint_best_legacy_500.pt", ref, {},
                             [str(i) for i in range(500)], optimizer_state=False)  # fmt: skip
        sources["encoder"] = "random-init ContentVec (full size, real format)"
    return {"model": folder / "G_0.pth", "config": folder / "config.json",
            "speakers": list(cfg["spk"]), "sources": sources}  # fmt: skip


def model_folder(folder: Path = ROOT / "pretrain" / "demo_voice") -> dict:
    """A model folder (one ``*.pth`` and its ``config.json``); default the shipped demo voice
    (``pretrain/demo_voice``: small 4.1 config, whisper-ppg-ct2 units, speakers alto / bass)."""
    import json

    from common.errors import InputError

    models = sorted(folder.glob("*.pth"))
    if len(models) != 1 or not (folder / "config.json").is_file():
        raise InputError(f"{folder}: expected one *.pth and a config.json (the demo voice folder)")
    cfg = json.loads((folder / "config.json").read_text())
    return {"model": models[0], "config": folder / "config.json", "speakers": list(cfg["spk"]),
            "sources": {"synthesizer": f"{folder} (trained)"}}  # fmt: skip


def load_svc(spec: dict, precision: str, pre: Path):
    """``inference.infer_tool.Svc`` of a :func:`template_model` / :func:`model_folder` spec."""
    from inference.infer_tool import Svc

    return Svc(spec["model"], spec["config"], "cpu", "", False, precision=precision,
               pretrain_dir=pre)  # fmt: skip


def machine(threads: int) -> dict:
    """CPU, threads, torch and Python versions, load average now (the benches' header)."""
    import platform
    import time

    import torch

    from bench.infer_speed import cpu_info

    info = cpu_info()
    info.pop("loadavg_at_start", None)
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "torch": torch.__version__,
            "python": platform.python_version(), "threads": threads, "cpu": info,
            "loadavg_before": list(os.getloadavg())}  # fmt: skip
