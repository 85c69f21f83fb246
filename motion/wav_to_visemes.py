"""A face track for any audio file, through the voice model's posterior encoder.

    python motion/wav_to_visemes.py song.wav -v logs/visemes/V_best.pth
    python motion/wav_to_visemes.py a.flac b.wav -v V_best.pth -m logs/44k/G_800.pth -c logs/44k/config.json -s alice

Each file → 44.1 kHz mono → z (``m_q`` with the speaker's embedding, :mod:`motion.voice`) → the
visemes model → ``<file minus extension>.blendshapes.npy`` (float32 [T, 61], T = samples // 512)
and ``.blendshapes.csv`` (Live Link Face layout) at 86.13 fps (:mod:`motion.predict`).
``-m``/``-c``/``-s`` default to the voice model, config and speaker the visemes model was
prepared with. A file that cannot be read is reported and skipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def wav_to_visemes(path, encoder, predictor, speaker, out_prefix=None):
    """Write the track for one file; returns ``(npy path, csv path, frames)``."""
    from common.audio import load_audio
    from motion.predict import track_prefix, write_track
    from motion.voice import SR

    wav, _ = load_audio(path, sr=SR)
    values = predictor(encoder.z(wav, speaker))
    npy, csv = write_track(out_prefix or track_prefix(path), values)
    return npy, csv, len(values)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("inputs", nargs="+", help="audio files")
    p.add_argument("-v", "--visemes", required=True, help="visemes model V_*.pth")
    p.add_argument("-m", "--model_path", default=None, help="voice model G_*.pth")
    p.add_argument("-c", "--config_path", default=None, help="voice config")
    p.add_argument("-s", "--speaker", default=None, help="speaker name or id for the encoder")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    from common.audio import AudioError
    from common.checkpoint import CheckpointError
    from common.errors import InputError, UserError
    from motion.predict import VisemesPredictor
    from motion.voice import PosteriorEncoder

    try:
        pred = VisemesPredictor(args.visemes, args.device)
        meta = pred.meta
        model = args.model_path or meta.get("voice_model")
        config = args.config_path or meta.get("voice_config")
        speaker = args.speaker if args.speaker is not None else meta.get("speaker")
        if not model or not config or speaker is None:
            raise ValueError(
                f"{args.visemes}: no voice model/config/speaker recorded; pass -m -c -s"
            )
        enc = PosteriorEncoder(model, config, args.device)
        enc.speaker_id(speaker)
        from common.hparams import load_config

        pred.check_voice(load_config(config), config, model)  # z width, rate, the voice's weights
    except UserError:
        raise
    except (CheckpointError, OSError, ValueError) as e:
        raise InputError(str(e)) from None
    if enc.channels != pred.z_channels:
        raise InputError(f"{model}: has {enc.channels} z channels, the visemes model "
                         f"{args.visemes} expects {pred.z_channels}",
                         "use the voice model the visemes model was trained on")  # fmt: skip
    failed = 0
    for path in args.inputs:
        try:
            npy, csv, n = wav_to_visemes(path, enc, pred, speaker)
        except (AudioError, OSError, ValueError) as e:
            print(f"skipped {e}", file=sys.stderr)
            failed += 1
            continue
        print(f"{path}: {n} frames → {npy}, {csv}")
    if failed:
        # every one skipped: nothing written (1); some: a partial batch (3), as other batch tools
        return 1 if failed == len(args.inputs) else 3
    return 0


if __name__ == "__main__":
    from common.cli import run_main

    sys.exit(run_main(main))
