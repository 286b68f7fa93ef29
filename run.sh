#!/usr/bin/env bash
# Set up (once) and run the main job, or any lymphmet command:
#   ./run.sh                      the whole pipeline on synthetic slides (lymphmet demo -o lymphmet-demo)
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
if [ "$#" -eq 0 ]; then
  set -- demo -o lymphmet-demo
fi
exec .venv/bin/lymphmet "$@"
