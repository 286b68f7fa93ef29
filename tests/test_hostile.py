"""Hostile and careless input through the installed CLI: each small evil file is built here, run in a
child process, and must end with exit 2, one ``error:`` line naming the file, no traceback, bounded
memory and time (issue 38; ``docs/bad-input.md`` lists what is promised)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

import numpy as np
import pytest

# What the acceptance list allows each run.
MAX_RSS_BYTES = 1536 * 2**20
MAX_SECONDS = 60
# Address space for commands that never load TensorFlow: a regression that believes a file's claim
# fails here with MemoryError (and the test says so) instead of taking the machine's memory.
NO_TF_ADDRESS_SPACE = 6 * 2**30


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str
    max_rss: int
    seconds: float


def run_bounded(*args: str, tensorflow: bool = False) -> Outcome:
    """``lymphmet *args`` in a child process; its exit code, output, peak resident memory and time."""
    def limit() -> None:
        if not tensorflow:
            resource.setrlimit(resource.RLIMIT_AS, (NO_TF_ADDRESS_SPACE, NO_TF_ADDRESS_SPACE))

    start = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "napari_lymphmet.cli", *args], stdout=out, stderr=err,
                                preexec_fn=limit)
        killer = threading.Timer(MAX_SECONDS * 2, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Outcome(proc.returncode, out.read().decode(), err.read().decode(), usage.ru_maxrss * 1024,
                       time.monotonic() - start)


def assert_refused(outcome: Outcome, names: str, *words: str) -> None:
    """Exit 2, exactly one ``error:`` line naming ``names`` (and ``words``), nothing else, within bounds."""
    lines = outcome.stderr.strip().splitlines()
    assert outcome.code == 2, (outcome.code, outcome.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert names in lines[0], lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    assert "Traceback" not in outcome.stderr and "out of memory" not in lines[0]
    assert outcome.max_rss < MAX_RSS_BYTES, f"{outcome.max_rss / 2**20:.0f} MB resident"
    assert outcome.seconds < MAX_SECONDS, f"{outcome.seconds:.0f} s"


# -- evil slides -----------------------------------------------------------------------------------------
def tiled_tiff(path: Path, *, width: int, length: int, tile: tuple[int, int], tiles: list[bytes | None],
               compression: int = 1) -> Path:
    """A little-endian tiled RGB TIFF claiming whatever it is told; ``None`` tiles are absent (offset 0)."""
    tw, th = tile
    count = max(len(tiles), 1)
    entries = [(256, 4, [width]), (257, 4, [length]), (258, 3, [8, 8, 8]), (259, 3, [compression]),
               (262, 3, [2]), (277, 3, [3]), (284, 3, [1]), (322, 4, [tw]), (323, 4, [th]),
               (324, 4, [0] * count), (325, 4, [len(t) if t else 0 for t in tiles])]
    ifd_size = 2 + 12 * len(entries) + 4
    extra, external = 8 + ifd_size, {}
    for tag, kind, values in entries:
        size = (2 if kind == 3 else 4) * len(values)
        if size > 4:
            external[tag] = extra
            extra += size
    offsets, data_at = [], extra
    for t in tiles:
        offsets.append(data_at if t else 0)
        data_at += len(t) if t else 0
    entries[9] = (324, 4, offsets)
    out = bytearray(b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", len(entries)))
    blobs = b""
    for tag, kind, values in entries:
        fmt = "<" + ("H" if kind == 3 else "I") * len(values)
        packed = struct.pack(fmt, *values)
        if tag in external:
            out += struct.pack("<HHII", tag, kind, len(values), external[tag])
            blobs += packed
        else:
            out += struct.pack("<HHI", tag, kind, len(values)) + packed.ljust(4, b"\0")
    out += struct.pack("<I", 0) + blobs + b"".join(t for t in tiles if t)
    path.write_bytes(bytes(out))
    return path


def _jpeg_tile(side: int, *, claim: int | None = None) -> bytes:
    import imagecodecs

    data = bytearray(imagecodecs.jpeg8_encode(np.full((side, side, 3), 200, np.uint8), level=90))
    if claim is not None:
        sof = data.find(b"\xff\xc0")
        data[sof + 5:sof + 9] = struct.pack(">HH", claim, claim)
    return bytes(data)


def tile_bomb(tmp: Path) -> Path:
    """204 bytes whose one tile claims 65520 × 65520 px (17 GB decoded)."""
    return tiled_tiff(tmp / "tile-bomb.tif", width=65520, length=65520, tile=(65520, 65520), tiles=[b"\0" * 16])


def jpeg_frame_bomb(tmp: Path) -> Path:
    """A proper 256 px tile whose JPEG frame header claims 65500 × 65500 px."""
    return tiled_tiff(tmp / "frame-bomb.tif", width=256, length=256, tile=(256, 256),
                      tiles=[_jpeg_tile(256, claim=65500)], compression=7)


def sparse_giant(tmp: Path) -> Path:
    """200000 × 200000 px claimed, one real tile among 152881."""
    across = -(-200000 // 512)
    tiles: list[bytes | None] = [None] * (across * across)
    tiles[0] = _jpeg_tile(512)
    return tiled_tiff(tmp / "sparse-giant.tif", width=200000, length=200000, tile=(512, 512), tiles=tiles,
                      compression=7)


def device_slide(tmp: Path) -> Path:
    """A slide name that is a symlink to /dev/zero: endless bytes."""
    (tmp / "zero.svs").symlink_to("/dev/zero")
    return tmp / "zero.svs"


SLIDE_CASES = [
    ("info", tile_bomb, ("65520 × 65520",)),
    ("info", jpeg_frame_bomb, ("frame header claims 65500 × 65500",)),
    ("mask", sparse_giant, ("200000 × 200000", "not there")),
    ("info", device_slide, ("not a regular file",)),
    ("mask", device_slide, ("not a regular file",)),
]


@pytest.mark.parametrize(("command", "build", "words"), SLIDE_CASES,
                         ids=[f"{c}-{b.__name__}" for c, b, _ in SLIDE_CASES])
def test_a_hostile_slide_is_refused_in_one_line_within_bounded_memory(tmp_path, command, build, words):
    slide = build(tmp_path)
    args = [command, str(slide)] + (["-o", str(tmp_path / "out.png")] if command == "mask" else [])
    assert_refused(run_bounded(*args), str(slide), *words)


def test_a_bomb_is_refused_where_the_library_opens_it_too(tmp_path):
    """The napari reader and the widgets open slides through the same door."""
    from napari_lymphmet import open_slide
    from napari_lymphmet.errors import SlideError

    for build in (tile_bomb, sparse_giant):
        with pytest.raises(SlideError, match="not a slide we can read"):
            open_slide(build(tmp_path))
    with pytest.raises(SlideError, match="frame header"):
        open_slide(jpeg_frame_bomb(tmp_path))


# -- evil annotations ------------------------------------------------------------------------------------
def _geojson(features) -> str:
    return json.dumps({"type": "FeatureCollection", "features": features})


SQUARE = [[0, 0], [100, 0], [100, 100], [0, 100], [0, 0]]
ANNOTATION_CASES = {
    "features-not-a-list": (_geojson({"a": 1}), "'features' must be a list"),
    "feature-a-number": (_geojson([7]), "feature 0: must be an object"),
    "geometry-a-string": (_geojson([{"type": "Feature", "geometry": "Polygon", "properties": {}}]),
                          "geometry must be an object"),
    "no-coordinates": (_geojson([{"type": "Feature", "geometry": {"type": "Polygon"}, "properties": {}}]),
                       "needs a list of 'coordinates'"),
    "numbers-for-rings": (_geojson([{"type": "Feature", "properties": {},
                                     "geometry": {"type": "Polygon", "coordinates": [1, 2, 3]}}]),
                          "a polygon must be a list of rings"),
    "properties-a-list": (_geojson([{"type": "Feature", "properties": [1],
                                     "geometry": {"type": "Polygon", "coordinates": [SQUARE]}}]),
                          "'properties' must be an object"),
    "nan-in-a-hole": ('{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": '
                      '{"name": "met 1"}, "geometry": {"type": "Polygon", "coordinates": '
                      '[[[0,0],[100,0],[100,100],[0,100]], [[10,10],[NaN,10],[20,20]]]}}]}',
                      "feature 0 ('met 1'): a vertex is not a finite number"),
    "a-vertex-beyond-any-slide": (_geojson([{"type": "Feature", "properties": {},
                                             "geometry": {"type": "Polygon",
                                                          "coordinates": [[[0, 0], [1e300, 0], [0, 1e300]]]}}]),
                                  "beyond any slide"),
    "deep-nesting": ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
    "not-json": ("{'type': 1", "not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(ANNOTATION_CASES))
def test_a_malformed_geojson_is_refused_naming_the_feature(tmp_path, case):
    text, words = ANNOTATION_CASES[case]
    path = tmp_path / f"{case}.geojson"
    path.write_text(text)
    outcome = run_bounded("annotations", "convert", str(path), str(tmp_path / "out.xml"))
    assert_refused(outcome, str(path), words)
    assert not (tmp_path / "out.xml").exists()


@pytest.mark.parametrize("suffix", [".geojson", ".xml"])
def test_an_annotation_file_that_is_a_device_is_refused_before_reading(tmp_path, suffix):
    path = tmp_path / f"zero{suffix}"
    path.symlink_to("/dev/zero")
    other = ".xml" if suffix == ".geojson" else ".geojson"
    assert_refused(run_bounded("annotations", "convert", str(path), str(tmp_path / f"out{other}")), str(path),
                   "not a regular file")


def test_a_mask_sidecar_with_downsample_zero_is_refused_before_tensorflow_loads(tmp_path, small_synthetic):
    from PIL import Image

    mask = tmp_path / "small.png"
    Image.fromarray(np.full((69, 94), 255, np.uint8)).save(mask)
    (tmp_path / "small.png.json").write_text(json.dumps({"downsample": 0, "shape": [69, 94]}))
    outcome = run_bounded("predict", str(small_synthetic), "--mask", str(mask), "-o", str(tmp_path / "out"))
    assert_refused(outcome, "small.png.json", "downsample must be a finite number ≥ 1")
    assert outcome.seconds < 10, "refused only after TensorFlow loaded"


@pytest.mark.parametrize("bad", ["empty", "not-an-image", "tiff", "giant", "bomb"])
def test_a_bad_patch_file_is_refused_by_name_before_tensorflow_loads(tmp_path, bad):
    from PIL import Image

    for label in ("tumor", "normal"):
        (tmp_path / label).mkdir()
        Image.fromarray(np.full((96, 96, 3), 150, np.uint8)).save(tmp_path / label / "ok.png")
    path = tmp_path / "tumor" / f"{bad}.{'tif' if bad == 'tiff' else 'png'}"
    if bad == "tiff":
        Image.fromarray(np.zeros((96, 96, 3), np.uint8)).save(path)
    elif bad in ("giant", "bomb"):  # a PNG claiming 5000² px (or 30000², PIL's own limit) in a few bytes
        side = 5000 if bad == "giant" else 30000

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                         + chunk(b"IDAT", zlib.compress(b"\0" * 90001)) + chunk(b"IEND", b""))
    else:
        path.write_bytes(b"" if bad == "empty" else b"GIF89 no")
    outcome = run_bounded("score", "lymph-node-10x", str(tmp_path))
    assert_refused(outcome, str(path), {"empty": "not an image", "not-an-image": "not an image",
                                        "tiff": "patches must be PNG or JPEG", "giant": "claims 5000 × 5000 px",
                                        "bomb": "claims more pixels than PIL will decode"}[bad])
    assert outcome.seconds < 10, "refused only after TensorFlow loaded"


# -- evil models -----------------------------------------------------------------------------------------
def _with_card(tmp: Path, name: str, card: bytes | None = None, *, card_info: zipfile.ZipInfo | None = None,
               bomb: int = 0) -> Path:
    """A copy of the bundled model whose ``lymphmet.json`` is ``card`` (or a deflate bomb of ``bomb`` bytes)."""
    from napari_lymphmet.model import resolve_model

    source, target = resolve_model(None), tmp / f"{name}.keras"
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.infolist():
            if item.filename != "lymphmet.json":
                new.writestr(item, old.read(item.filename))
        if bomb:
            info = zipfile.ZipInfo("lymphmet.json")
            info.compress_type = zipfile.ZIP_DEFLATED  # a few hundred KB on disk
            with new.open(info, "w", force_zip64=True) as member:
                chunk = b" " * 2**20
                for _ in range(bomb // len(chunk)):
                    member.write(chunk)
        else:
            new.writestr(card_info or "lymphmet.json", card)
    return target


def _bundled_card() -> dict:
    from napari_lymphmet.model import read_metadata, resolve_model

    return read_metadata(resolve_model(None))


def _card_case(**changes) -> Callable[[Path], Path]:
    def build(tmp: Path) -> Path:
        card = {**_bundled_card(), **changes}
        return _with_card(tmp, "card", json.dumps(card).encode())
    return build


def _zip_bomb(tmp: Path) -> Path:
    return _with_card(tmp, "bomb", bomb=64 * 2**20)


def _bad_crc(tmp: Path) -> Path:
    path = _with_card(tmp, "crc", json.dumps(_bundled_card()).encode(),
                      card_info=zipfile.ZipInfo("lymphmet.json"))  # stored, so the JSON is in plain sight
    data = bytearray(path.read_bytes())
    at = data.find(b'"backbone"')
    data[at + 1] = ord("B")
    path.write_bytes(bytes(data))
    return path


MODEL_CASES = {
    "input-size-a-word": (_card_case(input_size="big"), "input_size must be a whole number"),
    "threshold-nan": (lambda tmp: _with_card(tmp, "nan", json.dumps({**_bundled_card(), "threshold": float("nan")})
                                              .encode()), "threshold must be a probability"),
    "mpp-infinite": (lambda tmp: _with_card(tmp, "inf", json.dumps({**_bundled_card(), "patch_mpp": float("inf")})
                                             .encode()), "patch_mpp must be a finite"),
    "mpp-negative": (_card_case(patch_mpp=-1), "patch_mpp must be a finite"),
    "classes-a-string": (_card_case(classes="tumor"), "classes must be two names"),
    "card-a-list": (lambda tmp: _with_card(tmp, "list", b"[1, 2]"), "must hold an object"),
    "card-zip-bomb": (_zip_bomb, "a model card is a few KB"),
    "card-bad-crc": (_bad_crc, "damaged model archive"),
}


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_a_hostile_model_card_is_refused_before_tensorflow_loads(tmp_path, small_synthetic, case):
    build, words = MODEL_CASES[case]
    model = build(tmp_path)
    outcome = run_bounded("predict", str(small_synthetic), "--model", str(model), "-o", str(tmp_path / "out"))
    assert_refused(outcome, str(model), words)
    assert outcome.seconds < 10, "refused only after TensorFlow loaded"


def _keras_model(tmp: Path, name: str, build) -> Path:
    from napari_lymphmet.model import read_card, resolve_model, save_model
    from napari_lymphmet.model._tensorflow import import_keras

    keras = import_keras()
    card = read_card(resolve_model(None))
    path = tmp / f"{name}.keras"
    save_model(build(keras, card.input_size), path, card)
    return path


def _two_outputs(keras, size):
    x = keras.Input((size, size, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(x, [keras.layers.Dense(1, activation="sigmoid")(pooled), keras.layers.Dense(1)(pooled)])


def _other_input(keras, size):
    x = keras.Input((size * 2, size * 2, 3))
    return keras.Model(x, keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(x)))


def _not_a_probability(keras, size):
    x = keras.Input((size, size, 3))
    head = keras.layers.Dense(1, kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(50.0))
    return keras.Model(x, head(keras.layers.GlobalAveragePooling2D()(x)))


@pytest.mark.slow
def test_a_model_of_the_wrong_shape_or_range_is_refused_naming_it(tmp_path, small_synthetic):
    for build, words in ((_two_outputs, "1 inputs and 2 outputs"), (_other_input, "but its card says")):
        model = _keras_model(tmp_path, build.__name__, build)
        outcome = run_bounded("predict", str(small_synthetic), "--model", str(model), "-o", str(tmp_path / "o"),
                              tensorflow=True)
        assert_refused(outcome, str(model), words)
    model = _keras_model(tmp_path, "fifty", _not_a_probability)
    outcome = run_bounded("predict", str(small_synthetic), "--model", str(model), "-o", str(tmp_path / "o"),
                          tensorflow=True)
    assert_refused(outcome, str(model), "the model gave 50 for a patch, not a probability")
    assert not (tmp_path / "o" / "heatmap.json").exists()


# -- a full disk -----------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 24 MB filesystem of its own (tmpfs), where a test can run out of space for real. Needs root."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path, leave: int) -> None:
    free = shutil.disk_usage(disk).free
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def test_a_full_disk_while_results_are_staged_leaves_the_previous_set_and_names_the_file(small_disk):
    from napari_lymphmet.errors import InputError
    from napari_lymphmet.io import result_set

    folder = small_disk / "slide"
    folder.mkdir()
    with result_set(folder, marker="heatmap.json") as stage:
        (stage / "overlay.png").write_bytes(b"old" * 1000)
        (stage / "heatmap.json").write_text('{"run": 1}')
    _fill(small_disk, leave=64 * 1024)
    with pytest.raises(InputError, match=r"overlay\.png: cannot write the results \(No space left on device\); "
                                         r"the folder keeps the previous results"):
        with result_set(folder, marker="heatmap.json") as stage:
            (stage / "overlay.png").write_bytes(b"new" * 2**20)
            (stage / "heatmap.json").write_text('{"run": 2}')
    assert (folder / "heatmap.json").read_text() == '{"run": 1}'
    assert (folder / "overlay.png").read_bytes() == b"old" * 1000
    assert sorted(p.name for p in folder.iterdir()) == ["heatmap.json", "overlay.png"]  # no staging left


def test_predict_into_a_full_disk_is_refused_before_any_work(small_disk, small_synthetic):
    _fill(small_disk, leave=2 * 2**20)
    out = small_disk / "out"
    outcome = run_bounded("predict", str(small_synthetic), "-o", str(out))
    assert_refused(outcome, str(out), "MB free")
    assert outcome.seconds < 10, "refused only after TensorFlow loaded"


# -- cohorts ---------------------------------------------------------------------------------------------
def test_a_cohort_of_hostile_names_and_odd_entries_completes_with_a_row_or_a_reason_each(tmp_path, small_synthetic):
    import csv

    folder = tmp_path / "cohort"
    folder.mkdir()
    names = ["case $^$ 1.tif", "=1+2.tif", "<b>bold.tif"]
    for name in names:
        shutil.copyfile(small_synthetic, folder / name)
    (folder / "a folder.svs").mkdir()
    (folder / "gone.svs").symlink_to(tmp_path / "nowhere.svs")
    (folder / "loop.svs").symlink_to(folder / "loop.svs")
    (folder / "sub").mkdir()
    (folder / "notes.docx").write_text("not a slide")
    out = tmp_path / "out"
    outcome = run_bounded("predict", str(folder), "-o", str(out), "--batch-size", "128", tensorflow=True)
    assert outcome.code == 0, outcome.stderr[-2000:]
    assert "Traceback" not in outcome.stderr
    summary = json.loads(outcome.stdout.strip().splitlines()[-1])
    assert len(summary["slides"]) == 3
    assert sorted(Path(s["path"]).name for s in summary["skipped"]) == ["notes.docx", "sub"]
    assert f"skipped: {folder / 'sub'}: a folder" in outcome.stderr
    with open(out / "slides.csv", newline="") as f:
        rows = {row["slide"].lstrip("'"): row for row in csv.DictReader(f)}
    assert len(rows) == 6  # three predicted, three that cannot be: each with its reason
    assert "is a directory" in rows["a folder"]["status"]
    assert "broken symbolic link" in rows["gone"]["status"]
    assert "symbolic link loop" in rows["loop"]["status"]
    assert rows["case $^$ 1"]["status"] == rows["<b>bold"]["status"] == rows["=1+2"]["status"] == "ok"
    raw = (out / "slides.csv").read_text()
    assert "'=1+2" in raw and "\n=1+2" not in raw and ",=1+2" not in raw  # no formula a spreadsheet would run
    page = (out / "index.html").read_text()
    assert "&lt;b&gt;bold" in page and "<b>bold" not in page
    for name in names:
        assert (out / Path(name).stem / "overlay.png").stat().st_size > 0
