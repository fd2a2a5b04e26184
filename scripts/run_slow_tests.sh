#!/usr/bin/env bash
# Long convergence studies (marked `slow`): measured orders in dt and grid that justify the
# tolerances of the CI tests. Not run by CI (pyproject's addopts deselect them).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -m slow -o addopts="" -q "$@"
