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

The stages live in their own modules, so that a streaming engine can reuse them; :class:`Svc`
puts them together (one mixin each):

- :mod:`inference.dsp`: signal helpers (input reading, DC high-pass, padding, clip splitting,
  loudness mix);
- :mod:`inference.loading`: the constructor (models, encoder, cluster/index, diffusion, ONNX
  backend, enhancer), the fit checks and the speaker look-up;
- :mod:`inference.features`: per-slice f0, units and the cluster/retrieval mix (``get_unit_f0``);
- :mod:`inference.synthesis`: the synthesizer and diffusion on one slice (``infer`` = ``get_unit_f0``
  + ``synthesize``, ``_diffuse``); the streaming engine (:mod:`inference.realtime`) calls the same
  ``get_unit_f0`` and ``synthesize`` per block;
- :mod:`inference.planning`: slicing a file and assembling the output (``slice_inference``).
"""

import logging

# re-exported: every import path of before the split (``from inference.infer_tool import ...``)
from inference.dsp import (
    DC_CUTOFF_HZ,
    change_rms,
    pad_array,
    read_audio,
    remove_dc,
    split_list_by_n,
)
from inference.features import F0FilterException, SliceFeatures
from inference.loading import BF16_TILE, SvcLoading
from inference.planning import SlicePlanning
from inference.synthesis import DEFAULT_SEED, SliceSynthesis

logger = logging.getLogger(__name__)

_read_audio = read_audio  # (the name before the split)

__all__ = ["BF16_TILE", "DC_CUTOFF_HZ", "DEFAULT_SEED", "F0FilterException", "Svc", "change_rms",
           "pad_array", "read_audio", "remove_dc", "split_list_by_n"]  # fmt: skip


class Svc(SvcLoading, SliceFeatures, SliceSynthesis, SlicePlanning):
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
