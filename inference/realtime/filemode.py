"""File mode: a whole file through the streaming engine, block by block, as a sound card would
feed it (``realtime.py --in_file song.wav --out_file out.wav``; the tests and the benchmark use it).

    out, report = stream_file(engine, wav, sr, paced=True)

The engine is warmed up first (:meth:`StreamEngine.warmup`: the first conversions build kernels
and would be late). ``paced=True``: block ``k`` (the input samples of engine block ``k``, at the file's rate) is handed
to the engine at wall time ``k · block_time`` after the start (or as soon as the previous block is
done, when the engine is late); its output is *ready* when :meth:`StreamSession.push` returns, and
it is an **underrun** when that is after its deadline ``(k + 1) · block_time`` (the moment a sound
card would have needed it). ``paced=False`` (``--as_fast_as_possible``): no waiting, the same
audio (the engine does not depend on wall time), underruns counted against the same deadlines
measured from the previous block's end (i.e. compute time > block time).

The file is resampled to the model rate once (soxr, as the offline conversion reads its input),
streamed at the model rate through a :class:`inference.realtime.StreamSession` (``prime=True``:
the output is the input delayed by the engine's latency, as long as the input) and resampled back
to the file's rate. (A session at the file's rate would do the same conversion, but its streaming
resampler holds a few samples back, so an exact one-block push would be converted one push late.)
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from inference.realtime.session import StreamSession


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    a = np.asarray(values, dtype=np.float64)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(a.max()),
            "mean": float(a.mean())}  # fmt: skip


def stream_file(engine, wav: np.ndarray, sr: int, paced: bool) -> tuple[np.ndarray, dict[str, Any]]:
    """Stream ``wav`` (float32 ``[L]`` mono at ``sr`` Hz) through ``engine`` → ``(out [L] float32
    at sr, report)``.

    ``report`` (JSON-ready): ``blocks``, ``model_calls``, ``gated_blocks``, ``underruns`` (and
    ``underrun_blocks``: their indices), ``compute_s`` (per-block engine time: ``p50``, ``p95``,
    ``p99``, ``max``, ``mean``, over all blocks, and ``compute_model_s`` over the blocks that
    ran the model), ``block_s``, ``latency_s`` (algorithmic), ``latency_samples`` (the same in
    output samples: where input position ``t`` lands, ± the SOLA offset),
    ``joins`` (output sample positions, at ``sr``, where each block's crossfade starts: block
    ``n ≥ 1``'s output begins there), ``sola_offsets`` (model-rate samples taken off the
    nominal delay, per block), ``wall_s``, ``realtime_factor`` (engine time / audio time),
    ``paced``, ``sample_rate``, ``model_sample_rate``, ``block_samples`` (model rate).
    """
    from common.audio import resample

    esr, b = engine.sample_rate, engine.block_samples
    n_in = int(np.asarray(wav).size)
    x = resample(np.asarray(wav, dtype=np.float32).reshape(-1), sr, esr)
    engine.warmup()  # (resets the engine)
    sess = StreamSession(engine, esr, esr, prime=True)
    block_s = b / esr
    n_blocks = -(-len(x) // b)  # blocks the input fills (the last one completed by flush)
    outs: list[np.ndarray] = []
    underruns: list[int] = []
    t_start = time.perf_counter()
    prev_done = t_start
    for k in range(n_blocks):
        if paced:
            due = t_start + k * block_s
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            deadline = t_start + (k + 1) * block_s
        else:
            deadline = prev_done + block_s
        outs.append(sess.push(x[k * b : (k + 1) * b]))
        prev_done = time.perf_counter()
        if prev_done > deadline:
            underruns.append(k)
    outs.append(sess.flush())
    wall = time.perf_counter() - t_start
    out = np.concatenate(outs) if outs else np.zeros(0, np.float32)
    out = resample(out, esr, sr)
    out = np.pad(out[:n_in], (0, max(0, n_in - out.shape[0])))  # (soxr rounds the length)
    st = engine.stats
    compute = list(st["compute_s"])
    model_compute = [c for c, off in zip(compute, _model_mask(st)) if off]
    n_joins = len(compute)
    joins = [round(n * b * sr / esr) for n in range(2, n_joins + 1)]  # (+1: the primed slot)
    joins = [j for j in joins if j < len(out)]
    report = {
        "blocks": int(st["blocks"]),
        "model_calls": int(st["model_calls"]),
        "gated_blocks": int(st["gated_blocks"]),
        "underruns": len(underruns),
        "underrun_blocks": underruns,
        "compute_s": _percentiles(compute),
        "compute_model_s": _percentiles(model_compute),
        "block_s": block_s,
        "latency_s": engine.latency_s,
        "latency_samples": round(engine.latency_s * sr),
        "joins": joins,
        "sola_offsets": [int(o) for o in st["sola_offsets"]],
        "wall_s": wall,
        "realtime_factor": (sum(compute) / (n_in / sr)) if n_in else 0.0,
        "paced": bool(paced),
        "sample_rate": int(sr),
        "model_sample_rate": int(esr),
        "block_samples": int(b),
    }
    return out.astype(np.float32), report


def _model_mask(stats: dict) -> list[bool]:
    """Per block: did it run the model (``stats["gated"]``: per block, was it gated)."""
    return [not g for g in stats["gated"]]
