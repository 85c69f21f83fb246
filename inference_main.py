"""Convert raw/<name> with a trained model → results/ (so-vits-svc 4.1 inference_main.py).

Every flag of the reference, same names and defaults; see inference/cli.py and README.
"""

import sys

from common.cli import run_main
from inference.cli import main

if __name__ == "__main__":
    sys.exit(run_main(main))
