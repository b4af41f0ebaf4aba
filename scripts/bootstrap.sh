# Shared by scripts/run and scripts/test: find or install uv, then the locked dependencies.
# uv is installed from PyPI into a private virtualenv under ~/.cache/plexus, so nothing
# touches the system Python (Debian's is "externally managed").
set -euo pipefail

UV_VERSION="0.13.9"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/plexus"

ensure_uv() {
    if command -v uv >/dev/null 2>&1; then
        UV="$(command -v uv)"
        return
    fi
    local venv="$CACHE_DIR/uv-$UV_VERSION"
    if [ ! -x "$venv/bin/uv" ]; then
        echo "==> installing uv $UV_VERSION into $venv"
        mkdir -p "$CACHE_DIR"
        python3 -m venv "$venv"
        # --force-reinstall: a venv left half-installed (the package without its binary)
        # otherwise reports "already satisfied" and still has no uv.
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            --force-reinstall "uv==$UV_VERSION"
    fi
    UV="$venv/bin/uv"
}
