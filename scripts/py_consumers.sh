#!/usr/bin/env bash
# The Python consumers of curate's output, for tests/py_consumers.rs: pyarrow, pandas
# and Hugging Face `datasets` from PyPI in the project's own virtual environment, so
# the test loads `kept/` and `rejected/` exactly as a user would.
#
#   scripts/py_consumers.sh install   # venv in .venv-py/ (idempotent)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${CURATE_PY_VENV:-$root/.venv-py}"
case "${1:-}" in
install)
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import pyarrow, pandas, datasets' 2>/dev/null; then
        exit 0
    fi
    python3 -m venv "$venv"
    # Pinned minors: the test checks what these releases do with our files.
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        'pyarrow==21.0.*' 'pandas==2.3.*' 'datasets==4.0.*' 'zstandard==0.23.*'
    ;;
*)
    echo "usage: $0 install" >&2
    exit 2
    ;;
esac
