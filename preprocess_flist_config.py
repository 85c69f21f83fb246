"""Write filelists/{train,val}.txt, configs/config.json and configs/diffusion.yaml (so-vits-svc 4.1)."""

import sys

from common.cli import run_main
from preprocess.flist_config import main

if __name__ == "__main__":
    sys.exit(run_main(main))
