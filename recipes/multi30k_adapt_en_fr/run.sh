#!/usr/bin/env bash
# Prepare (with the model's tokenizer) → fine-tune → average → translate → score (before → after) → RESULTS.md,
# with this directory's config.toml.
# Data: --data DIR or $NMT_DATA (e.g. ../shared/data/multi30k), else downloaded from the Multi30k repository.
# The model to start from: --init DIR or $INIT (default: [recipe] init, the Tatoeba recipe's averaged model).
# The Tatoeba corpus (its carved test is scored too): --general-data DIR or $GENERAL_DATA (default: [recipe] general).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
extra=()
if [[ -n "${INIT:-}" ]]; then extra+=(--init "$INIT"); fi
if [[ -n "${GENERAL_DATA:-}" ]]; then extra+=(--general-data "$GENERAL_DATA"); fi
exec "$python" "$root/recipes/pipeline.py" --recipe "$here" ${extra[@]+"${extra[@]}"} "$@"
