"""so-vits-svc 4.1 web UI (Gradio): convert, mix voices, compress. See README "Web UI".

python webUI.py [--host 127.0.0.1] [--port 7860] [--share]
"""

import sys

from common.cli import run_main
from webui.app import main

if __name__ == "__main__":
    sys.exit(run_main(main))
