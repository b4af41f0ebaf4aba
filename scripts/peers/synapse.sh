#!/usr/bin/env bash
# Install a real Matrix Synapse homeserver (PyPI `matrix-synapse`, pinned) into its own
# virtualenv under the user cache, outside the clone, so later runs reuse it. The matrix
# provider's tests (tests/providers/synapse_helpers.py) find it there and start it on
# loopback. Idempotent: a complete install is detected by a stamp file and skipped.
#
#   scripts/peers/synapse.sh          install if missing; print the venv's python path
#
# First install: about a minute and ~240 MB; afterwards it returns at once.
set -euo pipefail

SYNAPSE_VERSION="1.163.2"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/plexus"
VENV="$CACHE_DIR/synapse-$SYNAPSE_VERSION"
STAMP="$VENV/.plexus-installed"

if [ ! -f "$STAMP" ]; then
    echo "==> installing matrix-synapse $SYNAPSE_VERSION into $VENV" >&2
    rm -rf "$VENV"
    mkdir -p "$CACHE_DIR"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "matrix-synapse==$SYNAPSE_VERSION" >&2
    # Fail here, not in the tests, if the install cannot start Synapse's entry module.
    "$VENV/bin/python" -c "import synapse.app.homeserver" >&2
    touch "$STAMP"
fi
echo "$VENV/bin/python"
