"""Data preparation: resampling, file lists and configs, feature extraction."""
