#!/usr/bin/env bash
# The demo's config through the whole pipeline (prepare → train → average → translate → score → RESULTS.md).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
exec "$python" "$root/recipes/pipeline.py" --recipe "$here" --data "$root/data/sample" "$@"
