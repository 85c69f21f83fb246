"""Loading a conversion's models (:class:`SvcLoading`, the constructor of
:class:`inference.infer_tool.Svc`): config, so-vits synthesizer (or ONNX backend), diffusion model and
vocoder, speech encoder, k-means / feature index, enhancer; the checks that they fit each other and
the speaker look-up. Slice timings (``timings``, seconds per stage) are kept here too.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.checkpoint import CheckpointMismatchError
from common.errors import ConfigError, InputError

BF16_TILE = 4096
"""Window width [output samples] of the decoders' convolutions in bf16 (modules.fast_conv). On a
3-minute song with -eh (2 threads, AMX): 2048 → RTF 0.276, 4096 → 0.262, 8192 → 0.268–0.284,
32768 → 0.42, untiled → 0.48."""


class SvcLoading:
    """Construction and fit checks of :class:`inference.infer_tool.Svc` (its arguments are
    documented there)."""

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
        """A k-means file or feature index of another config is refused at load time (units of
        the so-vits model's width; with -od and no so-vits model, the diffusion model's)."""
        if self.net_g_ms is not None:
            ssl_dim = self.net_g_ms.ssl_dim
        else:
            ssl_dim = self.diffusion_model.unit_embed.in_features
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

    def _tick(self, stage: str, t0: float) -> float:
        t = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + (t - t0)
        return t
