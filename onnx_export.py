"""Export a trained model to ONNX for MoeVoiceStudio / DragonianLib (so-vits-svc 4.1 onnx_export.py).

    python onnx_export.py -n NAME [--encoder] [--cluster logs/44k/kmeans_10000.pt] [--diffusion]

Reads checkpoints/NAME/{model.pth, config.json} (and, with --diffusion, diffusion.pt +
diffusion.yaml); see onnxexport/ and README ("ONNX export").
"""

import sys

from common.cli import run_main
from onnxexport.cli import main

if __name__ == "__main__":
    sys.exit(run_main(main))
