"""Regenerate the user guide's screenshots from the real plugin (run under xvfb-run).

    python docs/make_screenshots.py DEMO_DIR      # DEMO_DIR from `lymphmet demo -o DEMO_DIR`
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("GALLIUM_DRIVER", "softpipe")
import tensorflow  # noqa: E402,F401  (loaded before Qt/GL: see the README's known issue)


def main() -> None:
    import napari
    from skimage.io import imsave

    from napari_lymphmet._widgets.detect import DetectWidget
    from napari_lymphmet._widgets.tissue import TissueMaskWidget

    demo = Path(sys.argv[1])
    out = Path(__file__).parent / "images"
    out.mkdir(exist_ok=True)
    slide = demo / "slides" / "test.tif"
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 900)
    viewer.open(str(slide), plugin="napari-lymphmet")
    viewer.open(str(slide.with_suffix(".xml")), plugin="napari-lymphmet")
    tissue = TissueMaskWidget(viewer)
    viewer.window.add_dock_widget(tissue, name="Tissue mask")
    tissue.detect()
    imsave(out / "tissue-mask.png", viewer.screenshot(canvas_only=False), check_contrast=False)
    viewer.layers.remove(tissue.layer)
    detect = DetectWidget(viewer)
    viewer.window.add_dock_widget(detect, name="Detect metastases")
    detect.model_file.value = demo / "model.keras"
    detect.run()
    imsave(out / "detect-metastases.png", viewer.screenshot(canvas_only=False), check_contrast=False)
    overlay = json.loads((demo / "predictions" / "test" / "heatmap.json").read_text())
    print("screenshots written to", out, "heatmap", overlay["shape"])
    viewer.close()


if __name__ == "__main__":
    main()
