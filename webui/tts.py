"""Text to speech through a local espeak-ng (never the network); the UI hides it without one."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

VOICES = ("en", "en-us", "de", "fr", "es", "it", "ja", "cmn", "ru", "pt", "ko")
GENDERS = {"male": "m3", "female": "f3"}


def espeak_path() -> str | None:
    return shutil.which("espeak-ng")


def available() -> bool:
    return espeak_path() is not None


def synthesize(text: str, out_path: str | os.PathLike, voice: str = "en", gender: str = "female",
               words_per_minute: int = 160, pitch: int = 50) -> Path:  # fmt: skip
    """Speak ``text`` to a wav (espeak-ng's 22.05 kHz mono); raises ValueError for bad input."""
    exe = espeak_path()
    if exe is None:
        raise ValueError("espeak-ng is not installed (apt-get install espeak-ng)")
    text = text.strip()
    if not text:
        raise ValueError("type some text first")
    if len(text) > 5000:
        raise ValueError(f"text is {len(text)} characters long; the limit is 5000")
    if voice not in VOICES or gender not in GENDERS:
        raise ValueError(f"voice must be one of {', '.join(VOICES)} and gender male or female")
    out_path = Path(out_path)
    cmd = [exe, "-v", f"{voice}+{GENDERS[gender]}", "-s", str(int(words_per_minute)), "-p", str(int(pitch)),
           "-w", str(out_path), "--stdin"]  # fmt: skip
    proc = subprocess.run(cmd, input=text, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not out_path.is_file():
        raise ValueError(f"espeak-ng failed: {proc.stderr.strip() or proc.returncode}")
    return out_path
