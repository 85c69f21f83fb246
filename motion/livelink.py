"""Live Link Face "ARKit" packets, version 6 (motion.md §1.2), big-endian.

Layout: version ``u8`` (6) · device id (``i32`` length + UTF-8) · subject name (``i32`` length +
UTF-8) · frame time (frame ``i32``, sub-frame ``f32``, rate numerator ``i32``, denominator ``i32``)
· value count ``u8`` (61) · 61 × ``f32`` in :data:`motion.channels.NAMES` order.
Total size ``270 + len(device_id) + len(subject)`` bytes.

:func:`decode` raises :class:`MalformedPacket` for anything else (short, wrong version, wrong count,
wrong total length, bad UTF-8, NaN/inf values, a rate ≤ 0); :class:`PacketCounter` counts them so
a capture skips bad packets and goes on.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from dataclasses import dataclass

import numpy as np

from motion.channels import N_VALUES

VERSION = 6
_FRAME_TIME = struct.Struct(">ifii")
_VALUES = np.dtype(">f4")


class MalformedPacket(ValueError):
    """A datagram that is not a valid v6 ARKit packet; the message says why."""


@dataclass
class Packet:
    """One frame: ``values`` float32 ``[61]``; frame time = ``(frame + sub_frame) / (num/den)`` s."""

    device_id: str
    subject: str
    frame: int
    sub_frame: float
    rate_num: int
    rate_den: int
    values: np.ndarray

    @property
    def rate(self) -> float:
        return self.rate_num / self.rate_den

    @property
    def frame_time(self) -> float:
        """Seconds on the sender's timecode clock."""
        return (self.frame + self.sub_frame) * self.rate_den / self.rate_num


def rate_fraction(fps: float) -> tuple[int, int]:
    """An exact integer fraction for a frame rate: 60 → (60, 1), 44100/512 → (44100, 512)."""
    from fractions import Fraction

    if abs(fps - 44100 / 512) < 1e-6:
        return 44100, 512
    f = Fraction(fps).limit_denominator(1001)
    return f.numerator, f.denominator


def encode(
    values,
    frame: int,
    sub_frame: float = 0.0,
    rate: tuple[int, int] = (60, 1),
    device_id: str = "svc",
    subject: str = "SVC",
) -> bytes:
    """One v6 packet; ``values`` ``[61]`` (shorter is zero-padded, longer is an error).

    ``frame`` is sent as the signed 32-bit counter it is on the wire: past 2^31 - 1 it wraps to
    -2^31 (receivers unwrap it, see ``motion.record.FrameUnwrapper``)."""
    v = np.zeros(N_VALUES, dtype=_VALUES)
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size > N_VALUES:
        raise ValueError(f"a packet carries {N_VALUES} values, got {arr.size}")
    v[: arr.size] = arr
    dev, sub = device_id.encode("utf-8"), subject.encode("utf-8")
    return b"".join(
        [
            struct.pack(">B", VERSION),
            struct.pack(">i", len(dev)),
            dev,
            struct.pack(">i", len(sub)),
            sub,
            _FRAME_TIME.pack(_wrap_i32(frame), float(sub_frame), int(rate[0]), int(rate[1])),
            struct.pack(">B", N_VALUES),
            v.tobytes(),
        ]
    )


def _wrap_i32(n) -> int:
    return (int(n) + (1 << 31)) % (1 << 32) - (1 << 31)


def _string(data: bytes, pos: int, what: str) -> tuple[str, int]:
    if pos + 4 > len(data):
        raise MalformedPacket(f"short packet: ends inside the {what} length")
    (n,) = struct.unpack_from(">i", data, pos)
    pos += 4
    if n < 0 or pos + n > len(data):
        raise MalformedPacket(f"{what} length {n} runs past the end of the packet")
    try:
        return data[pos : pos + n].decode("utf-8"), pos + n
    except UnicodeDecodeError:
        raise MalformedPacket(f"{what} is not UTF-8") from None


def decode(data: bytes) -> Packet:
    """Parse one datagram; raises :class:`MalformedPacket`."""
    if len(data) < 1:
        raise MalformedPacket("empty packet")
    if data[0] != VERSION:
        raise MalformedPacket(f"packet version {data[0]}, expected {VERSION}")
    device_id, pos = _string(data, 1, "device id")
    subject, pos = _string(data, pos, "subject name")
    if pos + _FRAME_TIME.size + 1 > len(data):
        raise MalformedPacket("short packet: no blendshape count after the frame time")
    frame, sub_frame, num, den = _FRAME_TIME.unpack_from(data, pos)
    pos += _FRAME_TIME.size
    count = data[pos]
    pos += 1
    if count != N_VALUES:
        raise MalformedPacket(f"blendshape count {count}, expected {N_VALUES}")
    if len(data) != pos + 4 * N_VALUES:
        raise MalformedPacket(f"packet is {len(data)} bytes, expected {pos + 4 * N_VALUES}")
    if num <= 0 or den <= 0 or not math.isfinite(sub_frame):
        raise MalformedPacket(f"bad frame time (rate {num}/{den}, sub-frame {sub_frame})")
    values = np.frombuffer(data, dtype=_VALUES, count=N_VALUES, offset=pos).astype(np.float32)
    if not np.isfinite(values).all():
        raise MalformedPacket("NaN or infinite blendshape values")
    return Packet(device_id, subject, frame, sub_frame, num, den, values)


class PacketCounter:
    """Decode datagrams, counting the malformed ones by reason instead of raising."""

    def __init__(self) -> None:
        self.good = 0
        self.bad: Counter[str] = Counter()

    def decode(self, data: bytes) -> Packet | None:
        try:
            p = decode(data)
        except MalformedPacket as e:
            self.bad[_reason(str(e))] += 1
            return None
        self.good += 1
        return p

    @property
    def n_bad(self) -> int:
        return sum(self.bad.values())


def _reason(msg: str) -> str:
    """A short reason key: the message without numbers."""
    return " ".join(w for w in msg.split() if not any(c.isdigit() for c in w))
