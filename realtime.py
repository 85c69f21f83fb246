"""Realtime voice conversion: sound card → model → sound card, or a file streamed the same way.

    python realtime.py -m logs/44k/G_800.pth -c logs/44k/config.json -s alto --list_devices
    python realtime.py -m ... -c ... -s alto --input 1 --output 3 --block_time 0.25
    python realtime.py -m ... -c ... -s alto --in_file raw/song.wav --out_file out.wav --report r.json

Every flag is in inference/realtime/cli.py; the engine is inference/realtime (README: Realtime).
"""

import sys

from common.cli import run_main
from inference.realtime.cli import main

if __name__ == "__main__":
    sys.exit(run_main(main))
