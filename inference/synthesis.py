"""One slice through the synthesizer (:class:`SliceSynthesis`): ``infer`` = features
(``get_unit_f0``) + ``synthesize`` (so-vits, torch or ONNX,
then shallow diffusion, enhancer, loudness mix) and ``_diffuse`` (diffusion + vocoder).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from inference import dsp
from inference.dsp import change_rms, remove_dc

DEFAULT_SEED = 52468


class SliceSynthesis:
    """``infer`` and ``_diffuse`` of :class:`inference.infer_tool.Svc`."""

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
        wav = dsp.read_audio(raw_path, self.target_sample)
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
        audio = self.synthesize(c, f0, uv, sid, wav, noice_scale=noice_scale,
                                auto_predict_f0=auto_predict_f0, seed=seed, k_step=k_step,
                                second_encoding=second_encoding,
                                enhancer_adaptive_key=enhancer_adaptive_key,
                                loudness_envelope_adjustment=loudness_envelope_adjustment)  # fmt: skip
        return audio, audio.shape[-1], n_frames

    def synthesize(
        self,
        c: torch.Tensor,
        f0: torch.Tensor,
        uv: torch.Tensor,
        sid: torch.Tensor,
        wav: Any,
        *,
        noice_scale: float = 0.4,
        auto_predict_f0: bool = False,
        seed: int = DEFAULT_SEED,
        k_step: int = 100,
        second_encoding: bool = False,
        enhancer_adaptive_key: float = 0,
        loudness_envelope_adjustment: float = 1,
    ) -> torch.Tensor:
        """The synthesis stage of :meth:`infer` on features from :meth:`get_unit_f0`: so-vits (torch
        or ONNX) or diffusion only, then shallow diffusion, enhancer, loudness mix → audio
        ``[T·hop]`` float tensor at ``target_sample``.

        ``c [1, C, T]`` units, ``f0 [1, T]`` Hz (transposed), ``uv [1, T]`` (1 voiced);
        ``sid``: ``[[id]]`` LongTensor or a per-frame mix ``[T, n_spk]``; ``wav`` float32 numpy
        ``[≈T·hop]`` at ``target_sample``: the input these frames came from (volume embedding,
        diffusion volume, loudness envelope). The offline conversion (:meth:`infer`) and the
        streaming engine (:mod:`inference.realtime.engine`) both call this one method.
        """
        c, f0, uv = c.to(self.dtype), f0.to(self.dtype), uv.to(self.dtype)
        if self.only_diffusion:
            with torch.inference_mode():
                audio = self._diffuse(None, f0.float(), c, None, sid, wav, k_step, False, seed)
                if loudness_envelope_adjustment != 1:
                    audio = change_rms(wav, self.target_sample, audio, self.target_sample,
                                       loudness_envelope_adjustment)  # fmt: skip
            return audio
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
        return audio

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
