"""NSF-HiFiGAN vocoders: one generator implementation for all uses (sovits-4.1.md §8).

- ``build_decoder(vocoder_name, h)``: the decoder ``dec`` inside G (``"nsf-hifigan"`` or
  ``"nsf-snake-hifigan"``); call it as ``dec(x [B, I, T], f0 [B, T], g [B, G, 1])``.
- ``load_nsf_hifigan(path)`` / ``Vocoder``: the pretrained openvpi NSF-HiFiGAN (shallow diffusion).
- ``Enhancer``: NSF-HiFiGAN re-synthesis of so-vits output (``--enhance``).
- ``fold_weight_norm(module)``: weight norm → plain weights for inference.
"""

from vdecoder.enhancer import Enhancer
from vdecoder.nsf_hifigan import (
    DECODERS,
    NsfHifiGanGenerator,
    SineGen,
    SourceModuleHnNSF,
    build_decoder,
)
from vdecoder.pretrained import (
    DEFAULT_NSF_HIFIGAN,
    VOCODER_TYPES,
    Vocoder,
    load_nsf_config,
    load_nsf_hifigan,
    save_nsf_hifigan,
)
from vdecoder.weight_norm import fold_weight_norm, has_weight_norm, weight_norm

__all__ = [
    "DECODERS",
    "DEFAULT_NSF_HIFIGAN",
    "VOCODER_TYPES",
    "Enhancer",
    "NsfHifiGanGenerator",
    "SineGen",
    "SourceModuleHnNSF",
    "Vocoder",
    "build_decoder",
    "fold_weight_norm",
    "has_weight_norm",
    "load_nsf_config",
    "load_nsf_hifigan",
    "save_nsf_hifigan",
    "weight_norm",
]
