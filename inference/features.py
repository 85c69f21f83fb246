"""Per-slice features of a conversion (:class:`SliceFeatures`): f0 (cached predictor), speech
units stretched to the f0 frames, and the optional k-means / faiss-retrieval unit mix.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from common.errors import ConfigError, InputError


class F0FilterException(Exception):
    """``f0_filter`` is on and a slice has no voiced frame (reference name)."""


class SliceFeatures:
    """``f0_predictor`` and ``get_unit_f0`` of :class:`inference.infer_tool.Svc`."""

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

    def get_unit_f0(
        self,
        wav: np.ndarray,
        tran: float,
        cluster_infer_ratio: float,
        speaker: Any,
        f0_filter: bool,
        f0_predictor: str,
        cr_threshold: float = 0.05,
        encoder_kw: dict | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``c [1, C, T]``, ``f0 [1, T]``, ``uv [1, T]`` for a wav at ``target_sample``.
        ``encoder_kw``: extra arguments of the speech encoder's ``encoder()`` (the realtime
        converter's Whisper ``pad_seconds``); ``None`` for the offline conversion."""
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
            c = self.hubert_model.encoder(wav16k, **(encoder_kw or {}))
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
