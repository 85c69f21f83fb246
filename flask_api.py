"""VST plug-in server (so-vits-svc 4.1's flask_api.py): ``POST /voiceChangeModel`` on 127.0.0.1:6842.

The same process also serves ``/wav2wav`` and the JSON API (``/docs``); see webui/api.py.

    python flask_api.py -m logs/44k/G_30400.pth -c logs/44k/config.json [--host 0.0.0.0] [--port 6842]
"""

import sys

from common.cli import run_main
from webui.api import main

if __name__ == "__main__":
    sys.exit(run_main(lambda argv: main(argv, default_port=6842, name="flask_api.py")))
