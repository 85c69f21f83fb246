"""The streaming engine: :class:`StreamConfig` (what the user sets) and :class:`StreamEngine`
(block in → block out at the model rate).

    cfg = StreamConfig(block_time=0.25, crossfade_time=0.05, extra_time=1.0, speaker="alto")
    engine = StreamEngine(svc, cfg)            # svc: inference.infer_tool.Svc
    y = engine.process(x)                      # float32 [block_samples] → [block_samples]

Sizes (samples at the model rate ``sr``, hop ``h`` = 512 at 44.1 kHz):

- ``B`` block = ``block_time`` rounded **up** to a multiple of ``h``;
- ``F`` crossfade = ``round(crossfade_time·sr)``, ``S`` SOLA search = ``round(sola_search_time·sr)``;
- ``R = B + F + S``: the converted samples a block needs (its output, the next join's tail, the
  search range), ``Rh`` = ``R`` rounded up to ``h``;
- ``E`` extra (left) context = ``extra_time`` rounded up to ``h``;
- input ring buffer ``W = E + Rh`` samples (a multiple of ``h``, so the model's frames fall on it
  exactly: frame ``i`` ↔ samples ``[i·h, (i+1)·h)``). ``F`` and ``S`` are kept exact, not
  rounded to hops: rounding them up would add up to two hops (23 ms) of latency for nothing.

Per block: the block enters the ring buffer; if the RMS of the last ``R`` samples (the block and
the ``F + S`` before it, all the input this block's output and next tail come from) is below
``threshold_db`` dBFS the block is *gated*: the output is silence with the previous tail faded
out, and the model is not called (``stats["gated_blocks"]``). Otherwise the converter turns the
window into the audio of its last ``R`` samples, ``y [R]``; SOLA (:mod:`inference.realtime.sola`) finds the offset ``k ∈ [0, S]``
where ``y`` best continues the previous tail, the output is ``y[k : k+B]`` with its first ``F``
samples crossfaded with that tail, and ``y[k+B : k+B+F]`` is the next tail.

Delay: output sample ``i`` of block ``n`` is input sample ``n·B + i − (F + S − k)``, so
:meth:`StreamEngine.process` delays its stream by ``F + S − k ∈ [F, F + S]`` samples
(``delay_samples`` is the nominal ``F + S``, the SOLA offset of an identity stream is 0). A block
can only be converted once it is complete, which costs one more block in wall-clock time: the
algorithmic latency is ``latency_s = (B + F + S)/sr`` (block + crossfade + SOLA search; no
look-ahead: the models see nothing past the newest input sample). A sound card plays block
``n``'s output one block after capturing block ``n``; :class:`inference.realtime.StreamSession`
and the file mode reproduce that slot, so their output streams are the input delayed by
``round(latency_s·sr)`` (± the SOLA offset, ≤ ``S``).

The model stage is a *converter* ``converter(window [W], n_out) -> [n_out]`` (the audio of the
window's last ``n_out`` samples); the default is :class:`inference.realtime.convert.SvcConverter`
(the offline pipeline's ``get_unit_f0`` and ``synthesize``, f0 continuity). Tests inject an identity
converter to check buffering, SOLA and gating exactly. The engine is deterministic: the same input
and seed give byte-identical output.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from common.errors import UsageError
from inference.realtime.sola import crossfade, fades, find_offset

MAX_BLOCK_S = 10.0
MAX_EXTRA_S = 30.0
MAX_SEARCH_S = 0.1
MAX_SEMITONES = 48
MAX_NOISE_SCALE = 2.0
MIN_THRESHOLD_DB = -120.0
SILENCE_DB = -200.0  # the level reported for an all-zero block
WHISPER_WINDOWS = ("short", "30s")
"""``StreamConfig.whisper_window``: what a Whisper speech encoder (whisper-ppg*, whisper-*-ct2)
encodes per block: the window padded only to the next whole second (``short``, the default,
:data:`inference.realtime.convert.WHISPER_SHORT_PAD_S`), or padded to 30 s as offline (``30s``).
Other encoders ignore it. Measured (issue 22) on the demo voice (whisper-ppg-ct2), bf16, fcpe,
1 thread, vocadito_1: per-block compute p50 666 → 115 ms (0.25 s blocks, underruns 66/79 → 0/79);
stream vs offline over 30 s, 30s → short: f0 corr 0.9921 → 0.9919, SECS − offline +0.0175 →
+0.0091, loudness corr 0.614 → 0.728. Units of a 1.33 s window vs the same window padded to 30 s:
cosine per frame mean 0.936 (1st percentile 0.82; the window padded to 30 s vs the offline
whole-file units: mean 0.54)."""


@dataclass
class StreamConfig:
    """What a realtime stream is set to (each field checked on creation: :class:`UsageError`,
    one line naming the ``realtime.py`` flag).

    Times in seconds; ``threshold_db`` in dBFS, -120..0 (a block whose RMS is below it is passed
    as silence without the model; -120 practically never gates); ``transpose`` in semitones;
    ``speaker``: a name or id of the model (``None``: its first speaker), checked by
    :class:`StreamEngine` against the model.
    ``whisper_window``: one of :data:`WHISPER_WINDOWS`.
    """

    block_time: float = 0.25
    crossfade_time: float = 0.05
    extra_time: float = 1.0
    sola_search_time: float = 0.012
    threshold_db: float = -50.0
    speaker: Any = None
    transpose: float = 0.0
    cluster_infer_ratio: float = 0.0
    f0_predictor: str = "fcpe"
    noise_scale: float = 0.4
    seed: int = 52468
    whisper_window: str = "short"

    def __post_init__(self) -> None:
        from modules.f0 import F0_PREDICTORS

        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("speaker", "f0_predictor", "seed", "whisper_window"):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                _bad(f.name, v, "must be a finite number")
            setattr(self, f.name, float(v))
        if not 0 < self.block_time <= MAX_BLOCK_S:
            _bad(
                "block_time",
                self.block_time,
                f"a block is > 0 and at most {MAX_BLOCK_S:g} s (e.g. 0.25)",
            )
        if not 0 < self.crossfade_time < self.block_time:
            _bad("crossfade_time", self.crossfade_time,
                 f"the crossfade is > 0 and shorter than the block ({self.block_time:g} s)")  # fmt: skip
        if not 0 <= self.extra_time <= MAX_EXTRA_S:
            _bad(
                "extra_time",
                self.extra_time,
                f"the left context is 0..{MAX_EXTRA_S:g} s (e.g. 1.0)",
            )
        if not 0 <= self.sola_search_time <= min(MAX_SEARCH_S, self.block_time):
            _bad("sola_search_time", self.sola_search_time,
                 f"the join search is 0..{min(MAX_SEARCH_S, self.block_time):g} s (about one pitch "
                 "period of a low voice, 0.012)")  # fmt: skip
        if not MIN_THRESHOLD_DB <= self.threshold_db <= 0:
            _bad(
                "threshold",
                self.threshold_db,
                f"the silence threshold is in dBFS, {MIN_THRESHOLD_DB:g}..0 (e.g. -50)",
            )
        if abs(self.transpose) > MAX_SEMITONES:
            _bad("trans", self.transpose, f"a key shift is within +-{MAX_SEMITONES} semitones")
        if not 0 <= self.cluster_infer_ratio <= 1:
            _bad(
                "cluster_infer_ratio",
                self.cluster_infer_ratio,
                "the cluster / retrieval ratio is 0..1",
            )
        if not 0 <= self.noise_scale <= MAX_NOISE_SCALE:
            _bad(
                "noice_scale",
                self.noise_scale,
                f"the noise scale is 0..{MAX_NOISE_SCALE:g} (default 0.4)",
            )
        name = str(self.f0_predictor).strip().lower()
        if name not in F0_PREDICTORS:
            raise UsageError(f"--f0_predictor {self.f0_predictor}: unknown f0 predictor",
                             f"choose one of {', '.join(F0_PREDICTORS)}")  # fmt: skip
        self.f0_predictor = name
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            _bad("seed", self.seed, "the seed is an integer")
        if not 0 <= int(self.seed) < 2**63:
            _bad("seed", self.seed, "the seed is 0..2^63-1")
        self.seed = int(self.seed)
        if self.whisper_window not in WHISPER_WINDOWS:
            raise UsageError(f"--whisper_window {self.whisper_window}: unknown window",
                             f"choose one of {', '.join(WHISPER_WINDOWS)}")  # fmt: skip


def _bad(name: str, value: Any, rule: str) -> None:
    raise UsageError(f"--{name} {value}: out of range; {rule}")


def _up(x: float, h: int) -> int:
    """``x`` samples rounded up to a multiple of ``h`` (a tiny float excess does not add a hop)."""
    return int(math.ceil(x / h - 1e-9)) * h


class StreamEngine:
    """Block-by-block conversion with SOLA joins and a silence gate (see the module doc).

    ``svc``: a loaded :class:`inference.infer_tool.Svc` (torch or onnx backend, fp32 or bf16:
    the engine uses what the Svc was loaded with). ``converter``: the model stage (default: the
    Svc's own stages, :class:`inference.realtime.convert.SvcConverter`).

    ``stats`` (reset by :meth:`reset`): ``blocks``, ``model_calls``, ``gated_blocks`` (counts),
    ``last_compute_s`` and ``compute_s`` (seconds :meth:`process` took, the last block and every
    block), ``gated`` (per block: passed as silence), ``sola_offsets`` (per block: ``k``, samples).
    """

    def __init__(self, svc: Any, config: StreamConfig, converter: Callable | None = None):
        self.svc = svc
        self.config = config
        self.sample_rate = sr = int(svc.target_sample)
        self.hop = h = int(svc.hop_size)
        if config.speaker is None:
            config.speaker = next(iter(svc.spk2id), 0)
        svc.speaker_id(config.speaker)  # InputError naming the speaker and the model's speakers
        self.block_samples = _up(config.block_time * sr, h)
        self.crossfade_samples = max(1, round(config.crossfade_time * sr))
        self.search_samples = round(config.sola_search_time * sr)
        self.extra_samples = _up(config.extra_time * sr, h)
        self.convert_samples = self.block_samples + self.crossfade_samples + self.search_samples
        self.window_samples = self.extra_samples + _up(self.convert_samples, h)
        if converter is None:
            from inference.realtime.convert import SvcConverter

            converter = SvcConverter(svc, config, self.window_samples, self.block_samples)
        self.converter = converter
        self._fade_in, self._fade_out = fades(self.crossfade_samples)
        self.reset()

    # ------------------------------------------------------------------------------------------
    @property
    def latency_s(self) -> float:
        """Algorithmic latency in seconds: block + crossfade + SOLA search (no look-ahead)."""
        return (
            self.block_samples + self.crossfade_samples + self.search_samples
        ) / self.sample_rate

    @property
    def delay_samples(self) -> int:
        """The delay :meth:`process` adds to its stream, in samples (nominal; the SOLA offset
        takes up to ``search_samples`` off it)."""
        return self.crossfade_samples + self.search_samples

    def latency_line(self) -> str:
        """One line: the latency budget in ms (block, crossfade, search, extra, total)."""
        ms = 1000.0 / self.sample_rate
        return (f"latency: block {self.block_samples * ms:.1f} ms + crossfade "
                f"{self.crossfade_samples * ms:.1f} ms + SOLA search {self.search_samples * ms:.1f} ms "
                f"= {self.latency_s * 1000:.1f} ms algorithmic (extra context "
                f"{self.extra_samples * ms:.1f} ms, no added latency; look-ahead 0 ms)")  # fmt: skip

    def reset(self) -> None:
        """Forget the stream: empty ring buffer, silent tail, zeroed stats."""
        self._buf = np.zeros(self.window_samples, np.float32)
        self._tail = np.zeros(self.crossfade_samples, np.float32)
        self._offset = 0
        self.stats: dict[str, Any] = {"blocks": 0, "model_calls": 0, "gated_blocks": 0,
                                      "last_compute_s": 0.0, "compute_s": [], "sola_offsets": [], "gated": []}  # fmt: skip
        reset = getattr(self.converter, "reset", None)
        if callable(reset):
            reset()

    def warmup(self, calls: int = 2) -> None:
        """Run the converter ``calls`` times on a window of quiet noise (-40 dBFS, fixed seed),
        then :meth:`reset`: the first calls build kernels and caches (a first block can take
        seconds), which would otherwise be underruns at the start of a stream."""
        noise = np.random.default_rng(0).standard_normal(self.window_samples).astype(np.float32)
        for _ in range(calls):
            self.converter(0.01 * noise, self.convert_samples)
        self.reset()

    def process(self, x: np.ndarray) -> np.ndarray:
        """One block: ``x`` float32 ``[block_samples]`` at ``sample_rate`` → float32
        ``[block_samples]`` (the stream delayed by ``F + S − k``, see the module doc)."""
        t0 = time.perf_counter()
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        b, f = self.block_samples, self.crossfade_samples
        if x.shape[0] != b:
            raise ValueError(f"process takes blocks of {b} samples, got {x.shape[0]}")
        self._buf[:-b] = self._buf[b:]
        self._buf[-b:] = x
        self.stats["blocks"] += 1
        # the level of everything this block outputs or crossfades: the new block and the
        # F + S samples before it that the output lags by (a note ending just before a quiet
        # block is still converted)
        gated = block_db(self._buf[-self.convert_samples :]) < self.config.threshold_db
        self.stats["gated"].append(gated)
        if gated:
            out = np.zeros(b, np.float32)
            out[:f] = self._tail * self._fade_out
            self._tail = np.zeros(f, np.float32)
            self.stats["gated_blocks"] += 1
            skip = getattr(self.converter, "skip", None)
            if callable(skip):
                skip()
        else:
            y = np.asarray(self.converter(self._buf.copy(), self.convert_samples), dtype=np.float32)
            if y.shape != (self.convert_samples,):
                raise ValueError(
                    f"the converter returned {y.shape}, need ({self.convert_samples},)"
                )
            self.stats["model_calls"] += 1
            k = find_offset(self._tail, y[: f + self.search_samples])
            if k >= 0:
                self._offset = k
            k = self._offset
            out = y[k : k + b].copy()
            out[:f] = crossfade(self._tail, out, self._fade_in, self._fade_out)
            self._tail = y[k + b : k + b + f].copy()
        self.stats["sola_offsets"].append(self._offset)
        dt = time.perf_counter() - t0
        self.stats["last_compute_s"] = dt
        self.stats["compute_s"].append(dt)
        return out


def block_db(x: np.ndarray) -> float:
    """RMS level of ``x`` in dBFS (``SILENCE_DB`` for an all-zero block)."""
    ms = float(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0
    return 10.0 * math.log10(ms) if ms > 0 else SILENCE_DB
