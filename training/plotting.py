"""Images for TensorBoard (reference ``utils.plot_spectrogram_to_numpy`` / ``plot_data_to_numpy``).

matplotlib with the Agg backend; each function returns an ``[H, W, 3]`` uint8 array.
"""

from __future__ import annotations

import numpy as np


def _figure_to_array(fig) -> np.ndarray:
    fig.canvas.draw()
    data = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    import matplotlib.pyplot as plt

    plt.close(fig)
    return data


def plot_spectrogram_to_numpy(spectrogram: np.ndarray) -> np.ndarray:
    """A ``[bins, frames]`` array as an image (lower origin, colour bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 2))
    im = ax.imshow(spectrogram, aspect="auto", origin="lower", interpolation="none")
    plt.colorbar(im, ax=ax)
    plt.xlabel("Frames")
    plt.ylabel("Channels")
    plt.tight_layout()
    return _figure_to_array(fig)


def plot_data_to_numpy(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Two curves over frames (e.g. target and predicted log-f0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(14, 10))
    ax.plot(x)
    ax.plot(y)
    plt.tight_layout()
    return _figure_to_array(fig)
