#!/usr/bin/env bash
# Create .venv and install everything the suite needs (no network beyond the package index).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade "pip>=23" "setuptools<81" wheel
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -m pip install -q --no-deps -r requirements-nodeps.txt
# Debian packages. PortAudio: realtime.py's sound cards (sounddevice loads libportaudio.so.2 the
# way this check finds it; file mode and the web UI work without it). With --dev: the web UI's
# browser tests drive Debian's chromium through playwright (never `playwright install`: that
# downloads a browser build); espeak-ng backs the UI's text-to-speech input.
missing=()
.venv/bin/python -c "import ctypes.util, sys; sys.exit(ctypes.util.find_library('portaudio') is None)" \
  || missing+=(libportaudio2)
if [ "${1:-}" = "--dev" ]; then
  .venv/bin/python -m pip install -q -r requirements-dev.txt
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v espeak-ng >/dev/null || missing+=(espeak-ng)
fi
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]} with ${SUDO:+sudo }apt-get: libportaudio2 lets realtime.py" \
       "use sound cards, chromium drives the web UI's browser tests (through playwright)," \
       "espeak-ng speaks the web UI's text-to-speech input"
  # Another apt/dpkg (unattended upgrades, a package manager window) may hold the lock: wait for
  # it, up to 5 minutes, instead of failing after pip has finished.
  LOCK=(-o DPkg::Lock::Timeout=300)
  $SUDO apt-get "${LOCK[@]}" update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get "${LOCK[@]}" install -y -q "${missing[@]}"
fi
.venv/bin/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
