"""Chunks of any size at any rate in, converted audio out: :class:`StreamSession`.

    sess = StreamSession(engine, input_rate=48000, output_rate=48000)
    y = sess.push(chunk)     # float32 [n] → float32 [m]
    y_end = sess.flush()     # at the end of the stream

The input is resampled to the model rate with ``soxr.ResampleStream`` (HQ), cut into engine
blocks, converted, and resampled to ``output_rate``. soxr's streams keep sample positions (their
filter delay only holds samples back until the next chunk), so the output stream is the input
stream delayed by the engine's latency.

``prime=True`` (default) starts the output with one block of silence: the slot a sound card
plays a block in while the next one is captured. Then output position ``t + round(latency_s ·
output_rate)`` (± the SOLA offset, ≤ the search range) holds input position ``t``, and each
:meth:`push` returns as many samples as its chunk brought (at the output rate; fewer only while
the resamplers hold samples back: up to ~35 ms at 48 kHz, ~50 ms at 22.05 kHz, never more
than the input brought), so a player with a small jitter buffer can play what it gets as it gets it.
``prime=False`` returns everything converted as soon as it is ready (the output stream is then
delayed by ``engine.delay_samples`` only: a caller that adds its own one-block slot, like a
sound card callback of one block, wants this). Over a whole stream, after :meth:`flush`, the
output has exactly as many samples as the input (at the output rate): the last ``latency`` of
the input is not played, as on a device that stops with the input.
"""

from __future__ import annotations

import numpy as np

from common.errors import UsageError

MIN_RATE, MAX_RATE = 4000, 384000


def _check_rate(name: str, rate) -> int:
    if (
        isinstance(rate, bool)
        or not isinstance(rate, (int, float, np.integer))
        or rate != int(rate)
    ):
        raise UsageError(f"{name} {rate}: a sample rate is a whole number of Hz")
    if not MIN_RATE <= int(rate) <= MAX_RATE:
        raise UsageError(
            f"{name} {rate}: unsupported sample rate", f"use {MIN_RATE}..{MAX_RATE} Hz"
        )
    return int(rate)


class StreamSession:
    """A :class:`inference.realtime.StreamEngine` fed by chunks of any size at ``input_rate``,
    returning audio at ``output_rate`` (see the module doc)."""

    def __init__(self, engine, input_rate: int, output_rate: int, prime: bool = True):
        import soxr

        self.engine = engine
        self.input_rate = _check_rate("input rate", input_rate)
        self.output_rate = _check_rate("output rate", output_rate)
        sr = engine.sample_rate
        self._rs_in = None if self.input_rate == sr else soxr.ResampleStream(self.input_rate, sr, 1, dtype="float32", quality="HQ")  # fmt: skip
        self._rs_out = None if self.output_rate == sr else soxr.ResampleStream(sr, self.output_rate, 1, dtype="float32", quality="HQ")  # fmt: skip
        self.prime = bool(prime)
        self._pending = np.zeros(0, np.float32)  # model-rate input not yet a whole block
        prime_n = round(engine.block_samples * self.output_rate / sr) if self.prime else 0
        self._ready = np.zeros(prime_n, np.float32)  # output converted, not yet returned
        self.samples_in = 0  # input samples pushed (input rate)
        self.samples_out = 0  # output samples returned (output rate)
        self._flushed = False

    @property
    def latency_s(self) -> float:
        """Algorithmic latency of the output stream (the engine's; without ``prime`` one block
        less in sample positions, see the module doc)."""
        return self.engine.latency_s

    def _target(self) -> int:
        return round(self.samples_in * self.output_rate / self.input_rate)

    def _convert(self, x: np.ndarray, last: bool = False) -> None:
        """``x`` at the input rate (``last``: drain the input resampler) → ``_ready``."""
        if self._rs_in is not None and not (self._flushed and not last):
            x = self._rs_in.resample_chunk(x, last=last)
        buf = np.concatenate([self._pending, np.asarray(x, np.float32)])
        b = self.engine.block_samples
        n = buf.shape[0] // b
        outs = [self.engine.process(buf[i * b : (i + 1) * b]) for i in range(n)]
        self._pending = buf[n * b :]
        if outs:
            y = np.concatenate(outs)
            if self._rs_out is not None:
                y = self._rs_out.resample_chunk(y)
            self._ready = np.concatenate([self._ready, np.asarray(y, np.float32)])

    def _take(self, n: int) -> np.ndarray:
        n = max(0, min(n, self._ready.shape[0]))
        y, self._ready = self._ready[:n], self._ready[n:]
        self.samples_out += n
        return y

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """``chunk`` float32 ``[n]`` (mono, ``input_rate``) → float32 ``[m]`` (``output_rate``)."""
        if self._flushed:
            raise RuntimeError("push after flush: start a new StreamSession (or reset it)")
        x = np.asarray(chunk, dtype=np.float32).reshape(-1)
        self.samples_in += x.shape[0]
        self._convert(x)
        if not self.prime:
            return self._take(self._ready.shape[0])
        return self._take(self._target() - self.samples_out)

    def flush(self) -> np.ndarray:
        """The rest of the stream: the input still buffered is padded with silence and converted;
        returns what makes the whole output as long as the whole input (at ``output_rate``)."""
        if self._flushed:
            return np.zeros(0, np.float32)
        self._flushed = True
        target = self._target()
        self._convert(np.zeros(0, np.float32), last=True)  # after _flushed: model-rate samples only
        b = self.engine.block_samples
        if self._pending.shape[0]:
            self._convert(np.zeros(b - self._pending.shape[0], np.float32))
        while self.samples_out + self._ready.shape[0] < target:
            self._convert(np.zeros(b, np.float32))
        if self._rs_out is not None:  # drain the output resampler's held-back samples
            y = self._rs_out.resample_chunk(np.zeros(0, np.float32), last=True)
            self._ready = np.concatenate([self._ready, np.asarray(y, np.float32)])
        return self._take(target - self.samples_out)

    def reset(self) -> None:
        """Start a new stream on the same engine (the engine is reset too)."""
        self.engine.reset()
        self.__init__(self.engine, self.input_rate, self.output_rate, self.prime)
