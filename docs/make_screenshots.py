"""Take the user guide's screenshots from the real plugin, under Xvfb.

    xvfb-run -a -s "-screen 0 1400x1000x24" python docs/make_screenshots.py DEMO_DIR [OUT_DIR]

``DEMO_DIR`` is the output of ``lymphmet demo``; ``OUT_DIR`` defaults to
``docs/images``. One screenshot per widget in use: tissue-mask tuning,
annotations, the patch grid preview, training with its curves, the heatmap
with its legend and detections, the *Detect metastases* panel alone with
its lesion table, and *Review detections* on the largest detection. The test
suite runs this on a small demo, so the pictures cannot go stale unnoticed.
Nothing is preloaded: the plugin runs TensorFlow in child processes, as it
does for every user.
"""

from __future__ import annotations

import sys
from pathlib import Path

SHOTS = ("tissue-mask.png", "annotations.png", "patch-grid.png", "training.png", "detect-metastases.png",
         "lesion-table.png", "review.png")


def main(demo: Path, out: Path) -> list[Path]:
    import napari
    from skimage.io import imsave

    from napari_lymphmet._napari.widgets import PLUGIN

    def open_widget(name: str):
        """As *Plugins ▸ napari-lymphmet ▸ name* does: napari builds the widget and docks it."""
        return viewer.window.add_plugin_dock_widget(PLUGIN, name)

    out.mkdir(parents=True, exist_ok=True)
    slide = demo / "slides" / "test.tif"
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 900)
    viewer.open(str(slide), plugin=PLUGIN)
    written = []

    def shot(name: str, dock=None) -> None:
        imsave(out / name, viewer.screenshot(canvas_only=False), check_contrast=False)
        written.append(out / name)
        if dock is not None:
            viewer.window.remove_dock_widget(dock)

    dock, tissue = open_widget("Tissue mask")
    tissue.detect()
    tissue.auto.value = False
    tissue.saturation.value = 0.12
    shot("tissue-mask.png", dock)

    dock, annotations = open_widget("Annotations")
    shapes = annotations.load(slide.with_suffix(".xml"))
    annotations.shapes_box.value = shapes
    shot("annotations.png", dock)

    dock, patches = open_widget("Patches")
    patches.tumor_box.value = shapes
    patches.mpp.value = 1.0
    patches.size.value = patches.stride.value = 64
    patches.preview()
    shot("patch-grid.png", dock)
    for layer in [la for la in viewer.layers if la.metadata.get("kind") == "patch-grid"]:
        viewer.layers.remove(layer)

    dock, train = open_widget("Train")
    train.data.value = demo / "patches"
    train.epochs.value = 3
    train.batch.value = 64
    train.output.value = out / ".screenshot-model.keras"
    train.start()
    (out / ".screenshot-model.keras").unlink(missing_ok=True)
    shot("training.png", dock)

    _, detect = open_widget("Detect metastases")
    detect.model_file.value = demo / "model.keras"
    detect.run()
    if detect.table.rowCount():
        detect.table.selectRow(0)  # the top lesion, zoomed to, as a pathologist would look at it
        camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
        camera.zoom = 0.3
    shot("detect-metastases.png")
    imsave(out / "lesion-table.png", _grab(detect.native), check_contrast=False)
    written.append(out / "lesion-table.png")

    dock, review = open_widget("Review detections")  # finds the run's folder by itself
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()  # napari docks it as a tab beside Detect's ...
    dock.raise_()  # ... and this brings that tab to the front
    if review.start() is not None and review.review.items:
        review.mark("tumor")
        review.step(-1)  # back on the largest, marked
    shot("review.png")
    viewer.close()
    return written


def _grab(widget):
    """A Qt widget's own pixels, as an (h, w, 3) uint8 array."""
    import numpy as np
    from qtpy.QtGui import QImage

    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    h, w, stride = image.height(), image.width(), image.bytesPerLine()
    return np.frombuffer(image.constBits().asstring(h * stride), np.uint8).reshape(h, stride)[:, :w * 3] \
        .reshape(h, w, 3).copy()


if __name__ == "__main__":
    demo_dir = Path(sys.argv[1])
    out_dir = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).parent / "images"
    for path in main(demo_dir, out_dir):
        print(path)
    sys.stdout.flush()
