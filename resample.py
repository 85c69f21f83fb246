"""Resample dataset_raw/<speaker>/* to 44.1 kHz mono 16-bit wav in dataset/44k (so-vits-svc 4.1)."""

import sys

from common.cli import run_main
from preprocess.resample import main

if __name__ == "__main__":
    sys.exit(run_main(main))
