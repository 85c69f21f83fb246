"""So-vits-svc 4.1 conversion: :class:`Svc` and :meth:`Svc.slice_inference` (sovits-4.1.md §15).

    svc = Svc("logs/44k/G_800.pth", "logs/44k/config.json")
    audio = svc.slice_inference("raw/song.flac", "alice", tran=0, slice_db=-40,
                                cluster_infer_ratio=0, auto_predict_f0=False, noice_scale=0.4)
    # audio: float32 numpy [L] at svc.target_sample (44.1 kHz)

Per input (``slice_inference``):

1. The file (any format soundfile or librosa reads; channels averaged) is resampled **once** to
   the model's rate (44.1 kHz, soxr). The reference sliced at the file's own rate and resampled
   every padded piece separately with torchaudio; here every size — padding, forced clips,
   crossfades — is in output samples, so the output length equals the input duration exactly
   (fixes §18.6: the crossfade used input-rate sizes on 44.1 kHz output).
2. Silence slicing (:mod:`inference.slicer`, the reference algorithm, ``min_len`` 5000 ms).
   Silent chunks become zeros.
3. Each voiced chunk is cut into forced clips of ``clip_seconds`` (each clip after the first
   starts ``lg_num`` seconds early), zero-padded by ``pad_seconds`` on both sides, converted by
   :meth:`Svc.infer`, cropped back, and placed at its position; clips overlap by a linear
   crossfade of ``int(lg·lgr)`` samples centred in the ``lg`` overlap (the reference formula).
   A voiced chunk longer than ``max_chunk_seconds`` (default 30 s) with no ``clip_seconds`` is
   clipped the same way (0.5 s crossfade) so memory stays bounded (attention is quadratic in
   length; the reference had no bound). Slices are not re-quantised to 16 bit (reference quirk
   §18.5, dropped).

Per slice (``infer``): f0 (``get_f0_predictor``) → ``·2^(tran/12)``; units (speech encoder on the
16 kHz resample, stretched to the f0 frames); optional k-means (``cluster_infer_ratio`` with a
kmeans file) or faiss retrieval (``feature_retrieval``) mix; ``net_g.infer``; optional
NSF-HiFiGAN enhancer; optional loudness-envelope mix (``librosa.feature.rms`` over 0.5 s frames).

Bug fixes relative to 4.1-Stable (§18): integer speakers must be a valid id (``0 ≤ id < n``;
the reference accepted ``n``); a single-speaker dynamic mix falls back to that speaker (the
reference indexed ``dict_keys``); ``pad_seconds=0`` works (the reference cropped everything);
dynamic-mix frame counts are exact; an output longer than its slot is cut to it.

Shallow diffusion (``shallow_diffusion``, ``-shd``): the so-vits output's nsf-hifigan mel is
noised to step ``k_step`` and denoised by the diffusion model (:mod:`diffusion`), then the
NSF-HiFiGAN vocoder sings it; the enhancer is switched off. Diffusion only (``only_diffusion``,
``-od``): no so-vits model at all; the sample rate, hop, speakers and speech encoder come from the
diffusion config and the mel is sampled from noise. ``second_encoding`` re-encodes the so-vits
output for the diffusion condition. With a speaker mix the diffusion model gets the same per-frame
weights (4.1 crashed there, §18.7). All diffusion noise comes from one ``torch.Generator`` seeded
with ``seed``, so a conversion is reproducible. Missing diffusion files are an error naming the
file and the flag (4.1 silently switched diffusion off). A diffusion model that does not fit the
so-vits model (speech encoder, unit width, sampling rate, hop, speaker ids: :mod:`diffusion.fit`)
is refused when the models load, before any audio is read.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.checkpoint import CheckpointMismatchError
from common.errors import ConfigError, InputError
from inference import slicer

logger = logging.getLogger(__name__)

DEFAULT_SEED = 52468
BF16_TILE = 4096
"""Window width [output samples] of the decoders' convolutions in bf16 (modules.fast_conv). On a
3-minute song with -eh (2 threads, AMX): 2048 → RTF 0.276, 4096 → 0.262, 8192 → 0.268–0.284,
32768 → 0.42, untiled → 0.48."""


class F0FilterException(Exception):
    """``f0_filter`` is on and a slice has no voiced frame (reference name)."""


DC_CUTOFF_HZ = 20.0
"""The synthesizer's output goes through a zero-phase high-pass at this frequency [Hz]
(:func:`remove_dc`)."""


def remove_dc(audio: torch.Tensor, sr: int, cutoff: float = DC_CUTOFF_HZ) -> torch.Tensor:
    """Remove the DC offset (and drift below ``cutoff`` Hz) of ``audio [L]`` at ``sr`` Hz.

    The synthesizer learns an offset that nothing in training sees: the mel loss's lowest filter
    has weight 0 at 0 Hz (the demo voice's outputs had a mean of -0.03 to -0.06, drifting within a
    slice). A 2nd-order Butterworth high-pass run forwards and backwards (zero phase, -0.1 dB at
    65 Hz, the lowest sung note C2) removes the offset and its drift, which subtracting the mean
    of a slice would not. Signals too short for the filter only lose their mean."""
    from scipy.signal import butter, sosfiltfilt

    x = audio.detach().cpu().double().numpy()
    if len(x) < 64:
        y = x - x.mean() if len(x) else x
    else:
        y = sosfiltfilt(butter(2, cutoff, "highpass", fs=sr, output="sos"), x)
    return torch.from_numpy(np.ascontiguousarray(y)).to(audio.device, audio.dtype)


def pad_array(arr: np.ndarray, target_length: int) -> np.ndarray:
    """Centre ``arr`` in ``target_length`` samples with zeros; a longer array is cut at the end.

    (The reference returned a longer array unchanged, so the output drifted; §18.6.)
    """
    n = arr.shape[0]
    if n >= target_length:
        return arr[:target_length]
    pad = target_length - n
    return np.pad(arr, (pad // 2, pad - pad // 2))


def split_list_by_n(data: np.ndarray, n: int, pre: int = 0) -> list[np.ndarray]:
    """Pieces of ``n`` samples; every piece but the first starts ``pre`` samples early."""
    return [data[max(i - pre, 0) : i + n] for i in range(0, len(data), n)]


def change_rms(
    data1: np.ndarray, sr1: int, data2: torch.Tensor, sr2: int, rate: float
) -> torch.Tensor:
    """Mix the loudness envelopes (RVC ``change_rms``; §15 step 10).

    ``data1`` is the input, ``data2`` the output. Frame RMS over 0.5 s (hop 0.5 s) of both,
    linearly interpolated to the output length, output RMS ≥ 1e-6;
    ``out · rms_in^(1−rate) · rms_out^(rate−1)``. rate 1 keeps the output envelope, 0 imposes the
    input's.
    """
    import librosa
    import torch.nn.functional as F

    rms1 = librosa.feature.rms(y=np.asarray(data1, dtype=np.float32), frame_length=sr1 // 2 * 2,
                               hop_length=sr1 // 2)  # fmt: skip
    rms2 = librosa.feature.rms(y=data2.detach().float().cpu().numpy(), frame_length=sr2 // 2 * 2,
                               hop_length=sr2 // 2)  # fmt: skip
    n = data2.shape[0]
    rms1 = F.interpolate(torch.from_numpy(rms1).unsqueeze(0), size=n, mode="linear").squeeze()
    rms2 = F.interpolate(torch.from_numpy(rms2).unsqueeze(0), size=n, mode="linear").squeeze()
    rms2 = torch.clamp(rms2, min=1e-6)
    gain = torch.pow(rms1, 1 - rate) * torch.pow(rms2, rate - 1)
    return data2 * gain.to(data2)


def _read_audio(raw: Any, target_sr: int) -> np.ndarray:
    """``raw`` (path, file object, or numpy wav already at ``target_sr``) → mono float32."""
    from common.audio import load_audio, resample

    if isinstance(raw, np.ndarray):
        return np.ascontiguousarray(raw, dtype=np.float32)
    if isinstance(raw, torch.Tensor):
        return raw.detach().float().cpu().numpy().reshape(-1)
    if isinstance(raw, (io.IOBase, io.BytesIO)):
        import soundfile as sf

        data, sr = sf.read(raw, dtype="float32", always_2d=True)
        return resample(data.mean(axis=1), sr, target_sr)
    wav, _ = load_audio(raw, sr=target_sr)
    return wav


class Svc:
    """A loaded so-vits-svc model with its speech encoder, f0 predictors and optional extras.

    Arguments as the reference (§15); extra keyword arguments:

    - ``pretrain_dir``: folder of speech-encoder / vocoder files (default ``pretrain``);
    - ``fold_weight_norm``: fold weight norm into plain weights after loading, and run the
      decoders' convolutions in the channels-last layout (:mod:`modules.fast_conv`) (default True;
      same output to float rounding, max |Δ| ≈ 2.4e-7). Speed of ``net_g.infer`` on 10 s, 2
      threads, measured by ``bench/infer_speed.py``: on a 2-core AMD EPYC 0.71–0.98 of
      so-vits-svc 4.1's own time (median ≈ 0.88; the gain is in the transposed convolutions,
      the resblock convolutions already run near the fp32 peak); on a 2-core Xeon (AMX, shared
      with a training run) 0.55 of the straightforward path (weight norm kept, ``no_grad``) in
      the same run. It is not a general "1.5× faster than 4.1";
    - ``precision``: ``"fp32"`` (default) or ``"bf16"``: on the CPU the speech encoder (bf16
      weights), a neural f0 predictor (crepe, rmvpe, fcpe), the synthesizer and the enhancer run
      under bf16 autocast, their mel front ends and f0 decoding in fp32 (:mod:`common.precision`).
      Measured against fp32: synthesizer output 47.5 dB SNR; ContentVec units 41.5 dB SNR
      (random-init full size); whole conversion with ``-eh`` ≥ 35 dB SNR (tested; 39–40 dB
      measured). Whether it is faster depends on the CPU's bf16 support and load: see
      ``bench/infer_speed.py`` and inference/README.md;
    - ``max_chunk_seconds``: see the module doc;
    - ``backend``: ``"torch"`` (default) or ``"onnx"``: the synthesizer runs in ONNX Runtime from
      ``onnx_model`` (a ``*_SoVits.onnx`` from ``onnx_export.py``), or, when that is ``None``, from
      a file exported on the fly into ``<model folder>/onnx_cache/`` (reused while the checkpoint
      and config are unchanged). Everything else (f0, units, retrieval, speaker mix, enhancer,
      loudness) is the same code; the noise comes from the same seeded draws, so the output equals
      the torch backend's to float rounding. Automatic f0 prediction is not in the ONNX graph.
    """

    def __init__(
        self,
        net_g_path: str | os.PathLike,
        config_path: str | os.PathLike,
        device: str | torch.device | None = None,
        cluster_model_path: str | os.PathLike = "logs/44k/kmeans_10000.pt",
        nsf_hifigan_enhance: bool = False,
        diffusion_model_path: str | os.PathLike = "logs/44k/diffusion/model_0.pt",
        diffusion_config_path: str | os.PathLike = "configs/diffusion.yaml",
        shallow_diffusion: bool = False,
        only_diffusion: bool = False,
        spk_mix_enable: bool = False,
        feature_retrieval: bool = False,
        *,
        pretrain_dir: str | os.PathLike = "pretrain",
        fold_weight_norm: bool = True,
        precision: str = "fp32",
        max_chunk_seconds: float = 30.0,
        allow_partial: bool = False,
        backend: str = "torch",
        onnx_model: str | os.PathLike | None = None,
    ):
        if backend not in ("torch", "onnx"):
            raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        from common.hparams import load_config
        from common.precision import check as check_precision

        check_precision(precision)

        self.net_g_path = str(net_g_path)
        self.only_diffusion = bool(only_diffusion)
        self.shallow_diffusion = bool(shallow_diffusion) and not self.only_diffusion
        self.spk_mix_enable = bool(spk_mix_enable)
        self.feature_retrieval = bool(feature_retrieval)
        self.dev = torch.device(
            device if device else ("cuda" if torch.cuda.is_available() else "cpu")
        )
        self.pretrain_dir = Path(pretrain_dir)
        self.precision = precision
        self.max_chunk_seconds = float(max_chunk_seconds)
        self.timings: dict[str, float] = {}
        self.backend = backend
        self.onnx_model = onnx_model
        self.onnx_synth = None

        self.config_path = str(config_path)
        self.allow_partial = bool(allow_partial)
        self.diffusion_model = self.vocoder = self.diffusion_args = None
        if self.shallow_diffusion or self.only_diffusion:
            t0 = time.perf_counter()
            self.load_diffusion(diffusion_model_path, diffusion_config_path)
            self.timings["load_diffusion"] = time.perf_counter() - t0
        self.net_g_ms = self.hps_ms = None
        if self.only_diffusion:
            d = self.diffusion_args.data
            self.target_sample = int(d.sampling_rate)
            self.hop_size = int(d.block_size)
            self.spk2id = {str(k): int(v) for k, v in (self.diffusion_args.spk or {}).items()}
            self.unit_interpolate_mode = d.unit_interpolate_mode or "left"
            self.vol_embedding = False
            self.speech_encoder = d.encoder
            self.dtype = torch.float32
            self.n_speakers = max(self.diffusion_model.n_spk, len(self.spk2id), 1)
        else:
            self.hps_ms = load_config(config_path, infer=True, purpose="infer")
            data = self.hps_ms.data
            if data is None or self.hps_ms.model is None:
                raise ValueError(
                    f"{config_path}: not a so-vits-svc config (no 'data'/'model' section)"
                )
            self.target_sample = int(data.sampling_rate)
            self.hop_size = int(data.hop_length)
            self.spk2id = {str(k): int(v) for k, v in (self.hps_ms.spk or {}).items()}
            self.unit_interpolate_mode = data.unit_interpolate_mode or "left"
            self.vol_embedding = bool(self.hps_ms.model.vol_embedding or False)
            self.speech_encoder = self.hps_ms.model.speech_encoder or "vec768l12"
            if self.shallow_diffusion:  # from the configs, before the so-vits model is loaded
                from diffusion.fit import check_diffusion_fits

                check_diffusion_fits(self.diffusion_args, self.hps_ms, self.diffusion_model_path,
                                     self.diffusion_config_path, config_path)  # fmt: skip
            t0 = time.perf_counter()
            self.load_model(spk_mix_enable, fold_weight_norm)
            self.timings["load_model"] = time.perf_counter() - t0
            if backend == "onnx":
                from onnxexport.runtime import load_backend

                t0 = time.perf_counter()
                self.onnx_synth = load_backend(
                    self.net_g_path, config_path, onnx_model, device=str(self.dev),
                    threads=torch.get_num_threads(),
                )  # fmt: skip
                self.timings["load_onnx"] = time.perf_counter() - t0
        # shallow diffusion replaces the enhancer (reference)
        self.nsf_hifigan_enhance = bool(nsf_hifigan_enhance) and not self.shallow_diffusion

        from modules.mel_processing import VolumeExtractor
        from vencoder import get_speech_encoder

        t0 = time.perf_counter()
        self.hubert_model = get_speech_encoder(
            self.speech_encoder, device=self.dev, pretrain_dir=self.pretrain_dir
        )
        self.hubert_model.set_precision(precision)
        self.timings["load_encoder"] = time.perf_counter() - t0
        self.volume_extractor = VolumeExtractor(self.hop_size)

        self.cluster_model = None
        self.cluster_model_path = str(cluster_model_path) if cluster_model_path else ""
        if self.cluster_model_path and os.path.exists(self.cluster_model_path):
            if self.feature_retrieval:
                from cluster.feature_index import load_feature_index

                self.cluster_model = load_feature_index(self.cluster_model_path)
            else:
                from cluster import get_cluster_model

                self.cluster_model = get_cluster_model(self.cluster_model_path)
        else:
            self.feature_retrieval = False
        if self.cluster_model is not None:
            self._check_cluster_model()

        self.enhancer = None
        if self.nsf_hifigan_enhance:
            from vdecoder import Enhancer

            t0 = time.perf_counter()
            self.enhancer = Enhancer(
                "nsf-hifigan", self.pretrain_dir / "nsf_hifigan" / "model", device=self.dev
            )
            if fold_weight_norm and self.dev.type == "cpu":
                from modules.fast_conv import channels_last_convs

                channels_last_convs(self.enhancer.vocoder.load(), tile=self._tile())
            self.timings["load_enhancer"] = time.perf_counter() - t0
        self._f0_predictors: dict[tuple, Any] = {}
        # motion sidecar (motion.conversion.ZTrack): told the decoder's input z per slice and
        # where each slice lands in the output; reads only, so the audio is unchanged
        self.z_listener: Any = None

    def _check_cluster_model(self) -> None:
        """A k-means file or feature index of another config is refused at load time."""
        ssl_dim = self.net_g_ms.ssl_dim
        if self.feature_retrieval:
            dims = {str(k): int(v.index.d) for k, v in self.cluster_model.items()}
            tool = "train_index.py"
        else:
            dims = {k: v.n_features_in_ for k, v in self.cluster_model.items()}
            tool = "cluster/train_cluster.py"
        wrong = {k: d for k, d in dims.items() if d != ssl_dim}
        if wrong:
            k, d = next(iter(wrong.items()))
            raise CheckpointMismatchError(
                f"{self.cluster_model_path}: does not fit {self.config_path}: speaker {k!r} has "
                f"{d}-dim features but model.ssl_dim is {ssl_dim}",
                f"rebuild it for this model with {tool}",
            )

    def _tile(self) -> int | None:
        """bf16 runs the decoders' convolutions in fixed 4096-sample windows (see modules.fast_conv:
        oneDNN's AMX kernels are slow to build for every new slice length); fp32 does not."""
        return BF16_TILE if self.precision == "bf16" else None

    # ------------------------------------------------------------------------------------------
    def load_diffusion(self, model_path, config_path) -> None:
        """Load the diffusion model and its vocoder; missing files name the file and the flag."""
        from diffusion import DiffusionFileError, load_model_vocoder

        mode = "-od" if self.only_diffusion else "-shd"
        for path, flag in ((model_path, "-dm/--diffusion_model_path"),
                           (config_path, "-dc/--diffusion_config_path")):  # fmt: skip
            if path and not os.path.isfile(path):
                raise DiffusionFileError(
                    f"{path}: diffusion {'model' if flag.startswith('-dm') else 'config'} not "
                    f"found ({mode} needs it; set {flag}, or train one with train_diff.py)"
                )
        self.diffusion_model_path = str(model_path)
        self.diffusion_config_path = str(config_path or Path(model_path).parent / "config.yaml")
        self.diffusion_model, self.vocoder, self.diffusion_args = load_model_vocoder(
            model_path, self.dev, config_path or None
        )
        m = self.diffusion_model
        if self.only_diffusion and m.k_step_max != m.timesteps:
            raise InputError(
                f"{model_path}: this diffusion model was trained for shallow diffusion only "
                f"(k_step_max {m.k_step_max} of {m.timesteps} steps); it cannot convert alone (-od)",
                "use -shd with a so-vits model, or a diffusion model trained with k_step_max 0",
            )
        self.vocoder.load()

    def load_model(self, spk_mix_enable: bool = False, fold_weight_norm: bool = True) -> None:
        from common.checkpoint import load_checkpoint
        from models import SynthesizerTrn

        hps = self.hps_ms
        model_kwargs = hps.model.to_dict()
        self.net_g_ms = SynthesizerTrn(
            hps.data.filter_length // 2 + 1,
            hps.train.segment_size // hps.data.hop_length,
            **model_kwargs,
        )
        load_checkpoint(self.net_g_path, self.net_g_ms, None, config=self.config_path,
                        allow_partial=self.allow_partial)  # fmt: skip
        self.net_g_ms.eval().requires_grad_(False)
        if fold_weight_norm:
            self.net_g_ms.remove_weight_norm()
        if "half" in os.path.basename(self.net_g_path) and self.dev.type == "cuda":
            self.net_g_ms.half()
        self.net_g_ms.to(self.dev)
        if fold_weight_norm and self.dev.type == "cpu":
            from modules.fast_conv import channels_last_convs

            channels_last_convs(self.net_g_ms.dec, tile=self._tile())
        self.dtype = next(self.net_g_ms.parameters()).dtype
        self.n_speakers = int(self.net_g_ms.emb_g.num_embeddings)
        if spk_mix_enable:
            ids = sorted(self.spk2id.values())
            if ids != list(range(len(ids))) or not ids:
                raise ConfigError(
                    f"{self.config_path}: spk: dynamic speaker mix (-usm) needs speaker ids "
                    f"0..n-1, got {ids}",
                    "renumber the speakers in spk",
                )
            self.net_g_ms.EnableCharacterMix(len(self.spk2id), self.dev)

    # ------------------------------------------------------------------------------------------
    def speaker_id(self, speaker: Any) -> int:
        """A speaker name from the config, or an int id with ``0 ≤ id < n_speakers``."""
        if isinstance(speaker, str) and speaker in self.spk2id:
            return self._diffusion_speaker(self.spk2id[speaker], speaker)
        sid = None
        if isinstance(speaker, (int, np.integer)) and not isinstance(speaker, bool):
            sid = int(speaker)
        elif isinstance(speaker, str) and speaker.strip().lstrip("-").isdigit():
            sid = int(speaker)
        if sid is not None and 0 <= sid < self.n_speakers:
            return self._diffusion_speaker(sid, speaker)
        names = ", ".join(f"{k} ({v})" for k, v in self.spk2id.items())
        raise InputError(
            f"{self.config_path}: speaker {speaker!r} is not in the speaker list: "
            f"{names or '(empty)'}"
            + (f"; ids must be 0..{self.n_speakers - 1}" if sid is not None else ""),
            "give one of these names with -s",
        )

    def _diffusion_speaker(self, sid: int, speaker: Any) -> int:
        """``sid``, once a shallow-diffusion model is known to have that speaker."""
        if getattr(self, "shallow_diffusion", False) and self.diffusion_model is not None:
            from diffusion.fit import check_diffusion_speaker

            check_diffusion_speaker(
                self.diffusion_model.n_spk, sid, speaker, self.diffusion_model_path
            )
        return sid

    def check_spk_mix_diffusion(self) -> None:
        """A speaker mix with shallow diffusion: a multi-speaker diffusion model must have the
        so-vits model's speakers (the mix weights go to both)."""
        # (diffusion_model is absent on stand-ins built without __init__)
        diff = getattr(self, "diffusion_model", None)
        n_diff = diff.n_spk if diff is not None and self.shallow_diffusion else 1
        if n_diff > 1 and n_diff != len(self.spk2id):
            from diffusion.fit import DiffusionMismatchError

            raise DiffusionMismatchError(
                f"{self.diffusion_model_path}: a speaker mix (-usm) needs the diffusion model's "
                f"speakers ({n_diff}) to be the so-vits model's ({len(self.spk2id)}, "
                f"{self.config_path})",
                "use a diffusion model trained on the same speakers, or no -shd",
            )

    def speaker_name(self, sid: int) -> str | None:
        for k, v in self.spk2id.items():
            if v == sid:
                return k
        return None

    def f0_predictor(self, name: str, cr_threshold: float = 0.05):
        key = (name, float(cr_threshold))
        if key not in self._f0_predictors:
            from modules.f0 import get_f0_predictor

            self._f0_predictors.clear()  # keep one, like the reference
            self._f0_predictors[key] = get_f0_predictor(
                name, hop_length=self.hop_size, sampling_rate=self.target_sample, device=self.dev,
                threshold=cr_threshold, precision=self.precision,
            )  # fmt: skip
        return self._f0_predictors[key]

    def _tick(self, stage: str, t0: float) -> float:
        t = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + (t - t0)
        return t

    def get_unit_f0(
        self,
        wav: np.ndarray,
        tran: float,
        cluster_infer_ratio: float,
        speaker: Any,
        f0_filter: bool,
        f0_predictor: str,
        cr_threshold: float = 0.05,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``c [1, C, T]``, ``f0 [1, T]``, ``uv [1, T]`` for a wav at ``target_sample``."""
        from common.audio import resample
        from training.units import repeat_expand_2d

        t0 = time.perf_counter()
        f0, uv = self.f0_predictor(f0_predictor, cr_threshold).compute_f0_uv(wav)
        if f0_filter and np.sum(f0) == 0:
            raise F0FilterException("No voice detected")
        f0 = torch.as_tensor(np.asarray(f0), dtype=torch.float32, device=self.dev)[None]
        uv = torch.as_tensor(np.asarray(uv), dtype=torch.float32, device=self.dev)[None]
        f0 = f0 * 2 ** (tran / 12)
        t0 = self._tick("f0", t0)

        wav16k = torch.from_numpy(resample(wav, self.target_sample, 16000)).to(self.dev)
        with torch.inference_mode():
            c = self.hubert_model.encoder(wav16k)
        if self.net_g_ms is not None:
            want, key = self.net_g_ms.ssl_dim, "model.ssl_dim"
        else:  # only diffusion: the diffusion model's unit width
            want, key = self.diffusion_model.unit_embed.in_features, "data.encoder_out_channels"
        if c.shape[1] != want:
            raise ConfigError(
                f"{self.config_path}: {key} is {want} but the speech "
                f"encoder {self.speech_encoder!r} gives {c.shape[1]} channels",
                "set the speech encoder to the one the model was trained with",
            )
        c = repeat_expand_2d(c.squeeze(0), f0.shape[1], self.unit_interpolate_mode)
        t0 = self._tick("encoder", t0)

        if cluster_infer_ratio != 0:
            if self.cluster_model is None:
                raise FileNotFoundError(
                    f"cluster_infer_ratio is {cluster_infer_ratio} but no cluster model or feature "
                    f"index was loaded ({self.cluster_model_path or 'no path given'} not found); "
                    "train one (cluster/train_cluster.py or train_index.py) or use ratio 0"
                )
            feats = c.transpose(0, 1).cpu().numpy()
            sid = self.speaker_id(speaker)
            if self.feature_retrieval:
                if sid not in self.cluster_model:
                    raise InputError(
                        f"{self.cluster_model_path}: speaker id {sid} is not in the feature index "
                        f"({sorted(self.cluster_model)})",
                        "rebuild it with train_index.py",
                    )
                mixed = self.cluster_model[sid].retrieve(feats)
            else:
                from cluster import get_cluster_center_result

                name = (
                    speaker
                    if isinstance(speaker, str) and speaker in self.spk2id
                    else self.speaker_name(sid)
                )
                mixed = get_cluster_center_result(self.cluster_model, feats, name)
            mixed = torch.from_numpy(np.ascontiguousarray(mixed.T)).to(self.dev)
            c = cluster_infer_ratio * mixed + (1 - cluster_infer_ratio) * c
            self._tick("cluster", t0)
        return c.unsqueeze(0), f0, uv

    # ------------------------------------------------------------------------------------------
    def infer(
        self,
        speaker: Any,
        tran: float,
        raw_path: Any,
        cluster_infer_ratio: float = 0,
        auto_predict_f0: bool = False,
        noice_scale: float = 0.4,
        f0_filter: bool = False,
        f0_predictor: str = "pm",
        enhancer_adaptive_key: float = 0,
        cr_threshold: float = 0.05,
        k_step: int = 100,
        frame: int = 0,
        spk_mix: bool = False,
        second_encoding: bool = False,
        loudness_envelope_adjustment: float = 1,
        seed: int = DEFAULT_SEED,
    ) -> tuple[torch.Tensor, int, int]:
        """Convert one slice; returns ``(audio [L'] float tensor, L', n_frames)``.

        ``raw_path``: a file path, a file object, or a numpy wav already at ``target_sample``.
        ``speaker``: a name or id, or with ``spk_mix`` the full mix matrix ``[n_spk, N]`` whose
        columns ``frame:frame+T`` are used.
        """
        wav = _read_audio(raw_path, self.target_sample)
        if spk_mix:
            c, f0, uv = self.get_unit_f0(wav, tran, 0, None, f0_filter, f0_predictor, cr_threshold)
            n_frames = f0.size(1)
            sid = speaker[:, frame : frame + n_frames].transpose(0, 1).to(self.dev)
            if sid.shape[0] != n_frames:
                raise ValueError(
                    f"speaker mix has {sid.shape[0]} frames left at {frame}, need {n_frames}"
                )
        else:
            sid = torch.LongTensor([[self.speaker_id(speaker)]]).to(self.dev)
            c, f0, uv = self.get_unit_f0(wav, tran, cluster_infer_ratio, speaker, f0_filter, f0_predictor,
                                         cr_threshold)  # fmt: skip
            n_frames = f0.size(1)
        c, f0, uv = c.to(self.dtype), f0.to(self.dtype), uv.to(self.dtype)
        if self.only_diffusion:
            with torch.inference_mode():
                audio = self._diffuse(None, f0.float(), c, None, sid, wav, k_step, False, seed)
                if loudness_envelope_adjustment != 1:
                    audio = change_rms(wav, self.target_sample, audio, self.target_sample,
                                       loudness_envelope_adjustment)  # fmt: skip
            return audio, audio.shape[-1], n_frames
        from common.precision import uses_bf16

        t0 = time.perf_counter()
        with torch.inference_mode():
            vol = None
            if self.vol_embedding:
                vol = self.volume_extractor.extract(torch.from_numpy(wav)[None]).to(
                    self.dev, self.dtype
                )
            use_bf16 = uses_bf16(self.precision, self.dev)
            synth = self.onnx_synth or self.net_g_ms  # ONNX Runtime runs its graph in float32
            listener = getattr(self, "z_listener", None)
            hook = listener and self.net_g_ms.dec.register_forward_pre_hook(
                lambda _m, args: listener.decoder_input(args[0])
            )
            try:
                with torch.autocast(
                    "cpu", dtype=torch.bfloat16, enabled=use_bf16 and synth is self.net_g_ms
                ):
                    audio, f0 = synth.infer(c, f0=f0, uv=uv, g=sid, noice_scale=noice_scale, seed=seed,
                                            predict_f0=auto_predict_f0, vol=vol)  # fmt: skip
            finally:
                if hook:
                    hook.remove()
            audio = remove_dc(audio[0, 0].float(), self.target_sample)
            f0 = f0.float()
            t0 = self._tick("synthesizer", t0)
            if self.shallow_diffusion:
                self._last_sovits = (audio, f0)  # (tests and benches reuse it)
                audio = self._diffuse(audio, f0, c, vol, sid, wav, k_step, second_encoding, seed)
                t0 = time.perf_counter()
            if self.enhancer is not None:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                    audio, _ = self.enhancer.enhance(audio[None, :], self.target_sample, f0[:, :, None],
                                                     self.hop_size, adaptive_key=enhancer_adaptive_key)  # fmt: skip
                audio = audio.reshape(-1).float()
                t0 = self._tick("enhancer", t0)
            if loudness_envelope_adjustment != 1:
                audio = change_rms(wav, self.target_sample, audio, self.target_sample,
                                   loudness_envelope_adjustment)  # fmt: skip
                self._tick("loudness", t0)
        return audio, audio.shape[-1], n_frames

    def _diffuse(self, audio, f0, c, vol, sid, wav, k_step, second_encoding, seed) -> torch.Tensor:
        """Diffusion + vocoder: shallow from the so-vits ``audio [L]`` (or from noise when
        ``audio`` is None) → audio ``[T·hop]``. ``f0 [1, T]`` Hz, ``c [1, C, T]``."""
        from training.units import repeat_expand_2d

        t0 = time.perf_counter()
        n_frames = f0.shape[1]
        generator = torch.Generator(device=self.dev).manual_seed(int(seed))
        if audio is None:
            gt_mel = None
            if vol is None:
                vol = self.volume_extractor.extract(torch.from_numpy(wav)[None]).to(self.dev)
        else:
            gt_mel = self.vocoder.extract(audio[None], self.target_sample)
            if vol is None:
                vol = self.volume_extractor.extract(audio[None]).to(self.dev)
            if second_encoding:
                from common.audio import resample

                wav16k = resample(audio.cpu().numpy(), self.target_sample, 16000)
                c = self.hubert_model.encoder(torch.from_numpy(wav16k).to(self.dev))
                c = repeat_expand_2d(c.squeeze(0), n_frames, self.unit_interpolate_mode)[None]
        vol = vol.float()[:, :n_frames]
        if sid.is_floating_point():
            sid = sid.float()
        cfg = self.diffusion_args.infer
        mel = self.diffusion_model(
            c.float().transpose(1, 2), f0[:, :, None], vol[:, :, None], spk_id=sid, gt_spec=gt_mel,
            infer=True, infer_speedup=int(cfg.speedup), method=cfg.method, k_step=int(k_step),
            generator=generator,
        )  # fmt: skip
        t0 = self._tick("diffusion", t0)
        torch.manual_seed(int(seed))  # the vocoder's source noise: also fixed by the seed
        out = self.vocoder.infer(mel, f0[:, :, None]).reshape(-1).float()
        self._tick("vocoder", t0)
        return out

    # ------------------------------------------------------------------------------------------
    def _plan(
        self,
        wav: np.ndarray,
        slice_db: float,
        pad_seconds: float,
        clip_seconds: float,
        lg_num: float,
    ) -> list[tuple[bool, int, np.ndarray, list[tuple[int, np.ndarray]], int]]:
        """Chunks of the input: ``(is_silence, start, data, [(offset, piece)], lg_samples)``."""
        sr = self.target_sample
        chunks = slicer.chunks2audio(wav, slicer.cut(wav, sr, db_thresh=slice_db))
        plan = []
        pos = 0
        for is_silence, data in chunks:
            start = pos
            pos += len(data)
            if is_silence:
                plan.append((True, start, data, [], 0))
                continue
            per_size, lg_size = int(clip_seconds * sr), int(lg_num * sr)
            if (
                per_size == 0
                and self.max_chunk_seconds > 0
                and len(data) > self.max_chunk_seconds * sr
            ):
                per_size, lg_size = int(self.max_chunk_seconds * sr), int(0.5 * sr)
            if per_size == 0:
                pieces = [(0, data)]
                lg_size = 0
            else:
                pieces = [(max(i - lg_size, 0), data[max(i - lg_size, 0) : i + per_size])
                          for i in range(0, len(data), per_size)]  # fmt: skip
            plan.append((False, start, data, pieces, lg_size))
        return plan

    def _n_frames(self, n_samples: int, pad_len: int) -> int:
        return (n_samples + 2 * pad_len) // self.hop_size

    def build_spk_mix(self, spk_mix_map: Mapping, n_frames: int) -> torch.Tensor:
        """The per-frame weight matrix ``[n_spk, n_frames]`` (rows = speaker ids; columns sum to 1)."""
        n_spk = len(self.spk2id)
        rows: dict[int, Any] = {}
        for key, segs in spk_mix_map.items():
            sid = self.speaker_id(key)
            if sid in rows:
                raise InputError(f"spkmix.py: spk_mix_map: speaker {key!r} is given twice")
            rows[sid] = segs
        missing = [f"{k} ({v})" for k, v in self.spk2id.items() if v not in rows]
        if missing or len(rows) != n_spk:
            raise InputError(
                f"spkmix.py: spk_mix_map: every speaker of the config must be present "
                f"(unused ones as [[0., 1., 0., 0.]]); missing: {', '.join(missing) or '-'}"
            )
        mix = torch.zeros(n_spk, n_frames, dtype=torch.float64)
        for sid, segs in rows.items():
            if not segs:
                raise InputError(f"spkmix.py: spk_mix_map: speaker {sid} has no segments")
            if float(segs[0][0]) != 0.0 or float(segs[-1][1]) != 1.0:
                raise InputError(f"spkmix.py: spk_mix_map: speaker {sid}: the first segment must start at 0 "
                                 "and the last end at 1")  # fmt: skip
            last_end = None
            for seg in segs:
                if len(seg) != 4:
                    raise InputError(
                        f"spkmix.py: spk_mix_map: segment {seg} must be [t_start, t_end, v_start, v_end]"
                    )
                t0, t1, v0, v1 = (float(x) for x in seg)
                if v0 < 0 or v1 < 0:
                    raise InputError(
                        f"spkmix.py: spk_mix_map: values must be >= 0 (speaker {sid}, {seg})"
                    )
                begin, end = int(n_frames * t0), int(n_frames * t1)
                if end <= begin:
                    raise InputError(f"spkmix.py: spk_mix_map: segment {seg} of speaker {sid} is empty or reversed "
                                     f"({n_frames} frames in all)")  # fmt: skip
                if last_end is not None and last_end != begin:
                    raise InputError(f"spkmix.py: spk_mix_map: speaker {sid}: segments must be contiguous "
                                     "(each start = the previous end)")  # fmt: skip
                last_end = end
                length = end - begin
                mix[sid, begin:end] = v0 + (v1 - v0) / length * torch.arange(
                    length, dtype=torch.float64
                )
        total = mix.sum(0)
        zero = total == 0
        mix[:, zero] = 1.0 / n_spk
        total[zero] = 1.0
        return (mix / total).float()

    def slice_inference(
        self,
        raw_audio_path: Any,
        spk: Any,
        tran: float,
        slice_db: float,
        cluster_infer_ratio: float,
        auto_predict_f0: bool,
        noice_scale: float,
        pad_seconds: float = 0.5,
        clip_seconds: float = 0,
        lg_num: float = 0,
        lgr_num: float = 0.75,
        f0_predictor: str = "pm",
        enhancer_adaptive_key: float = 0,
        cr_threshold: float = 0.05,
        k_step: int = 100,
        use_spk_mix: bool = False,
        second_encoding: bool = False,
        loudness_envelope_adjustment: float = 1,
        seed: int = DEFAULT_SEED,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Convert a whole file (or numpy wav at ``target_sample``) → float32 ``[L]`` at 44.1 kHz.

        ``progress(done, total)`` is called before the first slice and after each converted slice
        (``total`` = voiced pieces to convert), e.g. for a progress bar.
        """
        sr = self.target_sample
        if clip_seconds < 0 or lg_num < 0 or pad_seconds < 0:
            raise ValueError("clip, crossfade and pad lengths must be >= 0")
        if not 0 <= lgr_num <= 1:
            raise ValueError(f"linear_gradient_retain must be in [0, 1], got {lgr_num}")
        from inference.cli import MIN_CLIP_SECONDS

        if 0 < clip_seconds < MIN_CLIP_SECONDS:
            raise ValueError(f"clip {clip_seconds} s: a forced clip is 0 (off) or at least "
                             f"{MIN_CLIP_SECONDS} s (shorter clips come out silent)")  # fmt: skip
        if clip_seconds > 0 and lg_num >= clip_seconds:
            raise ValueError(
                f"the crossfade ({lg_num} s) must be shorter than the clip ({clip_seconds} s)"
            )
        if use_spk_mix and len(self.spk2id) == 1:  # §18.8: the reference indexed dict_keys here
            spk = next(iter(self.spk2id))
            use_spk_mix = False
        if use_spk_mix and not self.spk_mix_enable:
            raise ValueError("use_spk_mix needs Svc(..., spk_mix_enable=True)")
        if use_spk_mix:
            self.check_spk_mix_diffusion()

        t0 = time.perf_counter()
        wav = _read_audio(raw_audio_path, sr)
        self._tick("read", t0)
        pad_len = int(sr * pad_seconds)
        listener = getattr(self, "z_listener", None)  # absent on stand-ins built without __init__
        if listener is not None:
            listener.start(len(wav))
        plan = self._plan(wav, slice_db, pad_seconds, clip_seconds, lg_num)

        if use_spk_mix:
            total = sum(len(d) // self.hop_size if s else sum(self._n_frames(len(p), pad_len) for _, p in pieces)
                        for s, _, d, pieces, _ in plan)  # fmt: skip
            spk = self.build_spk_mix(spk, max(total, 1)).to(self.dev)

        out = np.zeros(len(wav), dtype=np.float32)
        global_frame = 0
        n_pieces, done = sum(len(pieces) for *_, pieces, _ in plan), 0
        if progress is not None:
            progress(0, n_pieces)
        for is_silence, start, data, pieces, lg_size in plan:
            if is_silence:
                global_frame += len(data) // self.hop_size
                continue
            r = int(lg_size * lgr_num)  # blended samples, centred in the lg overlap
            cl = (lg_size - r) // 2
            fade = np.linspace(0, 1, r, dtype=np.float32)
            for k, (offset, piece) in enumerate(pieces):
                padded = np.concatenate(
                    [np.zeros(pad_len, np.float32), piece, np.zeros(pad_len, np.float32)]
                )
                audio, _, n_frames = self.infer(
                    spk, tran, padded, cluster_infer_ratio=cluster_infer_ratio,
                    auto_predict_f0=auto_predict_f0, noice_scale=noice_scale, f0_predictor=f0_predictor,
                    enhancer_adaptive_key=enhancer_adaptive_key, cr_threshold=cr_threshold, k_step=k_step,
                    frame=global_frame, spk_mix=use_spk_mix, second_encoding=second_encoding,
                    loudness_envelope_adjustment=loudness_envelope_adjustment, seed=seed,
                )  # fmt: skip
                global_frame += n_frames
                done += 1
                if progress is not None:
                    progress(done, n_pieces)
                t1 = time.perf_counter()
                y = audio.cpu().numpy()
                y = y[pad_len : len(y) - pad_len]
                y_len = len(y)
                y = pad_array(y, len(piece))
                at = start + offset  # where this piece's first sample belongs
                if listener is not None:
                    blend = k > 0 and lg_size > 0
                    listener.piece(at, pad_len, len(piece), y_len, at + cl if blend else None, r)
                if k > 0 and lg_size > 0:
                    # the overlap [at, at+lg): keep the previous output up to at+cl, blend r samples,
                    # then this piece from at+cl+r (the reference's formula, in output samples)
                    a = at + cl
                    out[a : a + r] = out[a : a + r] * (1 - fade) + y[cl : cl + r] * fade
                    out[a + r : at + len(y)] = y[cl + r :]
                else:
                    out[at : at + len(y)] = y
                self._tick("assemble", t1)
        return out
