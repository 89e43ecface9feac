#!/usr/bin/env bash
# The test run: set up, fetch the demo assets for the integration tests, run pytest (slow tests excluded).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
tfc assets fetch minilm-l6 rotten-tomatoes smollm2-135m lee mpnet-base
# Two workers, one test file each at a time: the tests are mostly single-threaded, and the machine has 2 cores.
python -m pytest -m "not slow" -n 2 --dist loadfile -p no:cacheprovider "$@"
