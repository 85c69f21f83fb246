"""SOLA (synchronous overlap-add) joins of converted blocks: where to join, and the crossfade.

Each block the engine converts a window and must continue the audio it already played. The
previous block left a *tail* (``F`` samples past its output block); the new conversion's *head*
(``F + S`` samples) overlaps it. :func:`find_offset` picks the offset ``k ∈ [0, S]`` at which
``head[k : k + F]`` is most like the tail (normalised cross-correlation), so the two waveforms are
in phase; :func:`crossfade` then blends ``tail`` into ``head[k : k + F]``.

The crossfade is a **Hann** (raised-cosine) fade, as RVC: ``fade_in = sin²(π/2·x)``,
``fade_out = cos²(π/2·x)``, ``fade_in + fade_out = 1``. After the SOLA alignment the tail and the
head are strongly correlated (the same model on overlapping audio), and for correlated signals
amplitude-complementary weights keep the level constant; an equal-power fade (``sin``/``cos``)
would lift it by up to 3 dB in the middle of every join. All sizes are in samples at the model rate.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-8


def find_offset(prev_tail: np.ndarray, head: np.ndarray) -> int:
    """The offset ``k ∈ [0, S]`` (``S = len(head) - len(prev_tail)``) maximising the normalised
    cross-correlation ``<tail, head[k:k+F]> / (‖tail‖·‖head[k:k+F]‖)``.

    ``prev_tail [F]``, ``head [F + S]`` float. Vectorised (numpy): the ``S + 1`` dot products by
    ``np.correlate`` and the window energies by a cumulative sum. A silent tail or head (energy
    ≈ 0) returns ``-1``: there is nothing to align to and the caller keeps its previous offset.
    """
    tail = np.asarray(prev_tail, dtype=np.float64)
    head = np.asarray(head, dtype=np.float64)
    n = tail.shape[0]
    s = head.shape[0] - n
    if n == 0 or s < 0:
        raise ValueError(f"head ({head.shape[0]}) must be at least the tail ({n}) long")
    tail_energy = float(np.dot(tail, tail))
    if tail_energy < EPS:
        return -1
    dots = np.correlate(head, tail, mode="valid")  # [S + 1]: dots[k] = <head[k:k+F], tail>
    c = np.concatenate([[0.0], np.cumsum(head * head)])
    energies = c[n : n + s + 1] - c[: s + 1]  # ‖head[k:k+F]‖²
    if float(energies.max()) < EPS:
        return -1
    ncc = dots / np.sqrt(tail_energy * np.maximum(energies, EPS))
    return int(np.argmax(ncc))


def fades(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hann ``(fade_in, fade_out)`` windows ``[n]`` float32: ``sin²``/``cos²`` of ``π/2·x`` with
    ``x = (i + 0.5)/n``, so ``fade_in + fade_out = 1`` at every sample."""
    x = (np.arange(n, dtype=np.float64) + 0.5) / n
    fade_in = np.sin(0.5 * np.pi * x) ** 2
    return fade_in.astype(np.float32), (1.0 - fade_in).astype(np.float32)


def crossfade(prev_tail: np.ndarray, head: np.ndarray, fade_in: np.ndarray | None = None,
              fade_out: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """``head[:F]·fade_in + prev_tail·fade_out`` → float32 ``[F]`` (Hann, see module doc);
    ``prev_tail [F]``, ``head [≥ F]`` (its first ``F`` samples are blended)."""
    n = len(prev_tail)
    if fade_in is None or fade_out is None:
        fade_in, fade_out = fades(n)
    return (
        np.asarray(head[:n], np.float32) * fade_in + np.asarray(prev_tail, np.float32) * fade_out
    ).astype(np.float32)
