#!/usr/bin/env bash
# Prepare → train → average → translate → score → RESULTS.md, with this directory's config.toml.
# Data: --data DIR or $NMT_DATA (e.g. ../shared/data/tatoeba, with tatoeba.en.gz and tatoeba.fr.gz), else downloaded from manythings.org.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
exec "$python" "$root/recipes/pipeline.py" --recipe "$here" "$@"
