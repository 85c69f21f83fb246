"""Reduced-precision inference on the CPU: which precision a network runs in, and where not.

``--precision bf16`` (``Svc(precision="bf16")``) runs the whole conversion's networks — speech
encoder, neural f0 predictor, synthesizer, enhancer — under CPU autocast to bfloat16
(:func:`autocast`): matmuls and convolutions take bf16 inputs (AMX / AVX-512-BF16 kernels), with
fp32 accumulation inside oneDNN. The numerically sensitive front and back ends stay in fp32 by
running inside :func:`fp32`: STFT and mel filterbanks, log compression, f0 decoding and
interpolation, resampling. A network's output is cast back to fp32 by its caller.

``fp32`` (the default) changes nothing: :func:`autocast` is then a disabled autocast, which
leaves every op as it is, so the fp32 outputs are bit-identical to code without these calls.
bf16 is used on the CPU only (on CUDA the models keep their own dtype, as in 4.1).
"""

from __future__ import annotations

import torch

PRECISIONS = ("fp32", "bf16")


def check(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def uses_bf16(precision: str, device: torch.device | str) -> bool:
    """True when ``precision`` is bf16 and ``device`` is the CPU."""
    return precision == "bf16" and torch.device(device).type == "cpu"


def autocast(precision: str, device: torch.device | str) -> torch.autocast:
    """CPU autocast to bfloat16 when :func:`uses_bf16`, else a disabled (no-op) autocast."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=uses_bf16(precision, device))


def fp32(device: torch.device | str = "cpu") -> torch.autocast:
    """A region that runs in the tensors' own dtype even inside :func:`autocast` (mel front ends)."""
    return torch.autocast(torch.device(device).type, enabled=False)


def cpu_has_bf16() -> bool:
    """True when this CPU computes bf16 natively (``avx512_bf16`` or ``amx_bf16`` in
    /proc/cpuinfo): where ``--precision bf16`` is worth being a default (elsewhere oneDNN emulates
    it, slower than fp32). False where the flags cannot be read (not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False
