"""Full-song server (so-vits-svc 4.1's flask_api_full_song.py): ``POST /wav2wav`` on 127.0.0.1:1145.

The audio is uploaded as the multipart file field ``audio`` (4.1 took a server path, which is
refused). The same process also serves ``/voiceChangeModel`` and the JSON API (``/docs``).

    python flask_api_full_song.py -m logs/44k/G_30400.pth -c logs/44k/config.json [--port 1145]
"""

import sys

from common.cli import run_main
from webui.api import main

if __name__ == "__main__":
    sys.exit(run_main(lambda argv: main(argv, default_port=1145, name="flask_api_full_song.py")))
