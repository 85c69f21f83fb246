"""Shallow diffusion (sovits-4.1.md §13): ``Unit2Mel`` (condition + ``GaussianDiffusion`` over a
``WaveNet`` denoiser), the samplers, the training data set and loop (``train_diff.py``)."""

from diffusion.gaussian import GaussianDiffusion
from diffusion.samplers import SAMPLERS
from diffusion.unit2mel import (
    DiffusionFileError,
    Unit2Mel,
    build_unit2mel,
    load_model_vocoder,
    load_unit2mel,
)
from diffusion.wavenet import WaveNet

__all__ = [
    "SAMPLERS",
    "DiffusionFileError",
    "GaussianDiffusion",
    "Unit2Mel",
    "WaveNet",
    "build_unit2mel",
    "load_model_vocoder",
    "load_unit2mel",
]
