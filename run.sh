#!/usr/bin/env bash
# Set up (once) and run any lymphmet command, e.g.
#   ./run.sh info ../shared/data/slides/CMU-1-Small-Region.svs
#   ./run.sh napari ../shared/data/slides/CMU-1-Small-Region.svs   (opens the viewer)
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/lymphmet ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[qt,distributed]"
fi
if [ "${1:-}" = "napari" ]; then
  shift
  exec .venv/bin/napari --plugin napari-lymphmet "$@"
fi
exec .venv/bin/lymphmet "$@"
