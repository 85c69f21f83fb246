"""Extract speech-encoder units, f0, spectrograms (and diffusion mels) for dataset/44k (so-vits-svc 4.1)."""

import sys

from common.cli import run_main
from preprocess.features import main

if __name__ == "__main__":
    sys.exit(run_main(main))
