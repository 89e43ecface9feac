#!/usr/bin/env bash
# The demo: set up, fetch the demo model and data, compress MiniLM-L6 (fine-tune, then INT8) and print the report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
tfc assets fetch minilm-l6 rotten-tomatoes
tfc compress recipes/rt-minilm-int8.yaml --overwrite "$@"
