"""Write each bundled model's ONNX export beside it (``models/<name>.onnx``), for ONNX Runtime.

    python scripts/export_onnx.py [MODEL ...]

Run after a bundled model is retrained: an export is used only while it was
made from the exact ``.keras`` file beside it (its SHA-256 is in the
export's metadata); otherwise the first prediction exports the model again
into the user's cache (seconds, TensorFlow loaded once).
"""

from __future__ import annotations

import sys

from napari_lymphmet.model import bundled_models
from napari_lymphmet.model.runtime import write_onnx_beside


def main() -> None:
    names = sys.argv[1:] or list(bundled_models())
    for name in names:
        print(write_onnx_beside(name), flush=True)


if __name__ == "__main__":
    main()
