#!/usr/bin/env bash
# The test run: set up, fetch the demo assets for the integration tests, run pytest (slow tests excluded).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
tfc assets fetch minilm-l6 rotten-tomatoes smollm2-135m lee
python -m pytest -m "not slow" -p no:cacheprovider "$@"
