"""Training of the so-vits-svc 4.1 generator/discriminator (train.py is a thin wrapper).

- :mod:`training.units`: ``repeat_expand_2d`` (content units to the frame rate; inference uses it too).
- :mod:`training.trainer`: the training loop (single device, DDP via ``torchrun``, AMP, resume).
- :mod:`training.plotting`: spectrogram / curve images for TensorBoard.
"""
