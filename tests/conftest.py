"""Shared fixtures: the real test slides beside the repo, and synthetic ones."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# GUI tests run as a user's napari does: Mesa's default driver, nothing preloaded. TensorFlow never
# loads into a viewer's process (the plugin runs it in child processes); GUI tests check that, and
# `python -m tests` runs them in a pytest session of their own, apart from the tests that load
# TensorFlow in-process, because Mesa's llvmpipe and TensorFlow each bring an LLVM and clash.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from napari_lymphmet.wsi import pyramid_shapes, write_jpeg_pages, write_pyramid_tiff

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SLIDES = DATA / "slides"


def real_slide(name: str) -> Path:
    path = SLIDES / name
    if not path.exists():
        pytest.skip(f"test data not found: {path}")
    return path


PLUGIN = "napari-lymphmet"


def open_widget(viewer, display_name: str):
    """Open a widget as *Plugins ▸ napari-lymphmet ▸ display_name* does, and return it.

    ``add_plugin_dock_widget`` builds the class from the manifest and hands it
    the viewer only through napari's own rules, so this fails where a user's
    menu click would.
    """
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, display_name)
    return widget


def write_patch_folder(root: Path, names, *, size: int = 32, seed: int = 0) -> Path:
    """An ImageFolder of noisy flat patches, bright tumor and dark normal: ``names(label)`` gives the file names."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label, mean in (("tumor", 170), ("normal", 90)):
        (root / label).mkdir(parents=True)
        for name in names(label):
            pixels = np.clip(rng.normal(mean, 30, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / name)
    return root


BAD_INPUTS = ["missing", "text", "truncated", "directory", "truncated-tail"]


def make_bad_input(tmp_path: Path, case: str, synthetic: Path) -> Path:
    """A path that is not a usable slide, of the kind ``case`` names."""
    if case == "missing":
        return tmp_path / "nope.svs"
    path = tmp_path / {"text": "x.svs", "truncated": "cut.svs", "directory": "folder.svs",
                       "truncated-tail": "cut.tif"}[case]
    if case == "text":
        path.write_text("not a slide\n")
    elif case == "truncated":
        path.write_bytes(real_slide("CMU-1-Small-Region.svs").read_bytes()[:200_000])
    elif case == "truncated-tail":
        # Directories at the front, tile data cut off at the end.
        import tifffile

        data = synthetic.read_bytes()
        with tifffile.TiffFile(synthetic) as tif:
            ifd_end = max(p.offset for p in tif.pages) + 4096
        path.write_bytes(data[: max(ifd_end, len(data) - 50_000)])
    else:
        path.mkdir()
    return path


def gradient_render(x: int, y: int, w: int, h: int) -> np.ndarray:
    """Smooth colour ramps with a per-tile stripe: cheap, and every region differs."""
    yy, xx = np.mgrid[y:y + h, x:x + w]
    out = np.empty((h, w, 3), np.uint8)
    out[..., 0] = (xx // 7) % 256
    out[..., 1] = (yy // 5) % 256
    out[..., 2] = ((xx + yy) // 64) % 2 * 120 + 60
    return out


@pytest.fixture(scope="session")
def small_synthetic(tmp_path_factory) -> Path:
    """A 3000 × 2200 generic-TIFF pyramid (3 levels, 256 px JPEG tiles, 0.5 µm/px)."""
    path = tmp_path_factory.mktemp("synthetic") / "small.tif"
    write_pyramid_tiff(path, gradient_render, 3000, 2200, tile=256, mpp=0.5, min_size=800)
    return path


@pytest.fixture(scope="session")
def gigapixel_synthetic(tmp_path_factory) -> Path:
    """A 40 000 × 40 000 (1.6 gigapixel) pyramid of two alternating pre-encoded tiles.

    Its pixels do not matter, only its size: it is written in about a second.
    """
    import imagecodecs

    path = tmp_path_factory.mktemp("giga") / "giga.tif"
    tiles = [imagecodecs.jpeg8_encode(np.full((512, 512, 3), c, np.uint8), level=80, subsampling="420")
             for c in ((230, 200, 220), (150, 90, 170))]
    shapes = pyramid_shapes(40_000, 40_000)

    def level_tiles(w, h):
        across, down = -(-w // 512), -(-h // 512)
        return (tiles[(r + c) % 2] for r in range(down) for c in range(across))

    write_jpeg_pages(path, [((h, w), level_tiles(w, h)) for w, h in shapes], tile=512, mpp=0.25)
    return path


def run_main(capsys, *argv: str) -> tuple[int, dict | None, str]:
    """Run ``lymphmet`` in-process: (exit code, JSON summary or None, stderr)."""
    import json

    from napari_lymphmet.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    return code, (json.loads(lines[-1]) if lines else None), err


def _needs_tensorflow(item) -> bool:
    return item.get_closest_marker("tf") is not None


def pytest_collection_modifyitems(config, items):
    """Mark TensorFlow tests; GUI tests check that TensorFlow stayed out of their process."""
    for item in items:
        if {"synthetic_model", "demo_run"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.tf)
        if item.get_closest_marker("gui") is not None and hasattr(item, "fixturenames"):
            item.fixturenames.insert(0, "no_tensorflow_in_the_viewer")


@pytest.fixture
def no_tensorflow_in_the_viewer():
    """A GUI test's process never loads TensorFlow: the plugin runs it in child processes."""
    import sys

    yield
    assert "tensorflow" not in sys.modules, "TensorFlow was loaded into the viewer's process"


@pytest.fixture(scope="session", autouse=True)
def onnx_cache_of_this_run(tmp_path_factory):
    """Model exports go to this run's temp folder (shared by its workers and children), not the user's cache."""
    os.environ.setdefault("LYMPHMET_CACHE_DIR", str(tmp_path_factory.getbasetemp().parent / "lymphmet-cache"))


def pytest_collection_finish(session):
    _freeze_what_is_loaded()  # napari, Qt and the test modules are imported by now


def _freeze_what_is_loaded() -> None:
    """Move the objects of the modules loaded so far out of the garbage collector's sight.

    napari runs ``gc.collect()`` whenever a layer is removed; with Qt and
    napari loaded that walks millions of long-lived objects each time.
    Objects made afterwards (slides, layers, viewers) are collected as usual.
    """
    import gc

    gc.collect()
    gc.freeze()


def lymphmet(*argv: str, timeout: float = 600) -> dict:
    """Run ``lymphmet`` in a child process, as a user (or the plugin) does; its JSON summary."""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "napari_lymphmet.cli", "-q", *argv], capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def synthetic_model(tmp_path_factory):
    """A small-cnn trained on patches of one synthetic slide, and another slide to predict.

    Patches are 64 px at 1 µm/px from 0.5 µm/px slides, so a heatmap cell is
    128 level-0 px. Returns (model path, test slide path).
    """
    with built_once(tmp_path_factory, "synthetic-model") as (root, done):
        if not done:
            _build_synthetic_model(root)
    return root / "synthetic.keras", root / "test_node.tif"


def _build_synthetic_model(root: Path) -> None:
    from napari_lymphmet import open_slide
    from napari_lymphmet.patches import PatchSpec, export_patches, plan_for_slide
    from napari_lymphmet.synthetic import SynthSpec, write_synthetic_slide

    for seed in (41, 43):  # two stains, so the model cannot lean on one
        train_slide = root / f"train_node_{seed}.tif"
        write_synthetic_slide(train_slide, SynthSpec(width=6144, height=6144, seed=seed, lesions=3, mpp=0.5))
        with open_slide(train_slide) as slide:
            plan = plan_for_slide(slide, PatchSpec(size=64, mpp=1.0, stride=40, max_per_class=150, seed=1),
                                  annotations=train_slide.with_suffix(".xml"))
            export_patches([(slide, plan)], root / "patches")
    model = root / "synthetic.keras"
    # In a child process: GUI tests use this model, and their process must never load TensorFlow.
    lymphmet("train", str(root / "patches"), "-o", str(model), "--backbone", "small-cnn", "--weights", "none",
             "--epochs", "10", "--input-size", "64", "--batch-size", "32", "--val-fraction", "0")
    test_slide = root / "test_node.tif"
    write_synthetic_slide(test_slide, SynthSpec(width=8192, height=6144, seed=42, lesions=3, mpp=0.5))


# Where fixtures built once are shared: `python -m tests` names one folder for both of its pytest sessions;
# a plain `pytest -n 2` shares among its workers.
SHARED_ENV = "LYMPHMET_TEST_SHARED"


@contextmanager
def built_once(tmp_path_factory, name: str) -> Iterator[tuple[Path, bool]]:
    """``(folder, already built)`` for a read-only fixture that every worker and session shares.

    The first process to get here builds it while holding a lock; the others
    wait, then find it built. Tests must not write into the folder.
    """
    import fcntl

    base = Path(os.environ.get(SHARED_ENV) or tmp_path_factory.getbasetemp().parent)
    root = base / name
    root.mkdir(parents=True, exist_ok=True)
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = root / ".built"
        done = marker.exists()
        yield root, done
        marker.touch()
