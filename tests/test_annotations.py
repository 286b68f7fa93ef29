"""Annotations: ASAP XML and QuPath GeoJSON in and out, rasterization, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_lymphmet.annotations import (
    EXCLUSION,
    TUMOR,
    Annotation,
    AnnotationWarning,
    fill_polygons,
    rasterize,
    read_annotations,
    read_asap_xml,
    read_geojson,
    write_annotations,
    write_asap_xml,
    write_geojson,
)
from napari_lymphmet.errors import InputError

from .conftest import DATA, run_main

ANNOTATIONS = DATA / "annotations"
C16 = ANNOTATIONS / "camelyon16_tumor_107_from_ncrf.xml"
C17 = ANNOTATIONS / "camelyon17_patient_004_node_4.xml"


def _need(path):
    if not path.exists():
        pytest.skip(f"test data not found: {path}")
    return path


def inside(xy: np.ndarray, x: float, y: float) -> bool:
    """Even-odd point in polygon, written independently of the rasterizer."""
    x0, y0 = xy[:, 0], xy[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = (y0 <= y) != (y1 <= y)
    with np.errstate(divide="ignore", invalid="ignore"):
        at = x0 + (y - y0) / (y1 - y0) * (x1 - x0)
    return bool(np.sum(crosses & (x < at)) % 2)


def test_camelyon16_xml_has_two_tumors_three_exclusions_and_holes_are_cut():
    anns = read_asap_xml(_need(C16))
    assert [a.label for a in anns].count(TUMOR) == 2
    assert [a.label for a in anns].count(EXCLUSION) == 3
    tumors = [a for a in anns if a.label == TUMOR]
    holes = [a for a in anns if a.label == EXCLUSION]
    ds = 32
    top = np.max([a.exterior.max(axis=0) for a in anns], axis=0)
    mask = rasterize(anns, (int(top[1] / ds) + 8, int(top[0] / ds) + 8), downsample=ds)
    checked_hole = checked_tumor = 0
    for hole in holes:
        # A point deep inside the hole: its mask pixel centre must be in the
        # exclusion and in a tumor polygon, and the mask must be 0 there.
        r, c = np.round(hole.exterior.mean(axis=0)[::-1] / ds - 0.5).astype(int)
        cx, cy = (c + 0.5) * ds, (r + 0.5) * ds
        if inside(hole.exterior, cx, cy) and any(inside(t.exterior, cx, cy) for t in tumors):
            assert not mask[r, c]
            checked_hole += 1
    ys, xs = np.nonzero(mask)
    pick = np.random.default_rng(0).choice(len(ys), 100)
    for r, c in zip(ys[pick], xs[pick], strict=True):
        cx, cy = (c + 0.5) * ds, (r + 0.5) * ds
        assert any(inside(t.exterior, cx, cy) for t in tumors)
        assert not any(inside(h.exterior, cx, cy) for h in holes)
        checked_tumor += 1
    assert checked_hole >= 1 and checked_tumor > 0
    # Without the exclusions the hole pixels are tumor: they really were cut.
    assert rasterize(tumors, mask.shape, downsample=ds).sum() > mask.sum()


def test_camelyon17_and_metastases_group_read_as_tumor(tmp_path):
    anns = read_asap_xml(_need(C17))
    assert len(anns) == 3 and {a.label for a in anns} == {TUMOR}
    variant = tmp_path / "m.xml"
    variant.write_text(C17.read_text().replace('PartOfGroup="Tumor"', 'PartOfGroup="metastases"'))
    again = read_asap_xml(variant)
    assert [a.label for a in again] == [TUMOR] * 3
    for a, b in zip(anns, again):
        np.testing.assert_array_equal(a.exterior, b.exterior)


def test_unknown_group_warns_and_is_tumor(tmp_path):
    path = tmp_path / "u.xml"
    write_asap_xml(path, [np.array([[0, 0], [10, 0], [10, 10.5]])], group="Lymphoma")
    with pytest.warns(AnnotationWarning, match=r"u\.xml: Annotation 0: unknown group 'Lymphoma'"):
        (ann,) = read_asap_xml(path)
    assert ann.label == TUMOR and ann.exterior[2, 1] == 10.5


ASAP_TYPES = """<?xml version="1.0"?><ASAP_Annotations><Annotations>
<Annotation Name="sp" Type="Spline" PartOfGroup="_0"><Coordinates>
 <Coordinate Order="1" X="10.5" Y="0"/><Coordinate Order="0" X="0" Y="0"/><Coordinate Order="2" X="5" Y="8.25"/>
</Coordinates></Annotation>
<Annotation Name="rect" Type="Rectangle" PartOfGroup="_1"><Coordinates>
 <Coordinate Order="0" X="100" Y="100"/><Coordinate Order="1" X="140" Y="100"/>
 <Coordinate Order="2" X="140" Y="120"/><Coordinate Order="3" X="100" Y="120"/>
</Coordinates></Annotation>
<Annotation Name="dot" Type="Dot" PartOfGroup="_0"><Coordinates>
 <Coordinate Order="0" X="300" Y="300"/></Coordinates></Annotation>
</Annotations></ASAP_Annotations>"""


def test_spline_rectangle_and_dot_types(tmp_path):
    path = tmp_path / "t.xml"
    path.write_text(ASAP_TYPES)
    with pytest.warns(AnnotationWarning, match="dot: a dot, read as a disc"):
        spline, rect, dot = read_asap_xml(path)
    np.testing.assert_array_equal(spline.exterior, [[0, 0], [10.5, 0], [5, 8.25]])  # by Order
    assert rect.area == pytest.approx(40 * 20)
    assert dot.area == pytest.approx(np.pi * 25**2, rel=0.03)
    assert np.allclose(dot.exterior.mean(axis=0), (300, 300))


def test_xml_geojson_xml_round_trip_keeps_vertices_and_classes(tmp_path):
    anns = read_asap_xml(_need(C16))
    write_geojson(tmp_path / "a.geojson", anns)
    write_asap_xml(tmp_path / "b.xml", read_geojson(tmp_path / "a.geojson"))
    back = read_asap_xml(tmp_path / "b.xml")
    assert [a.label for a in back] == [a.label for a in anns]
    for a, b in zip(anns, back):
        assert a.exterior.shape == b.exterior.shape
        assert np.abs(a.exterior - b.exterior).max() < 1e-3


def test_geojson_is_a_qupath_feature_collection(tmp_path):
    hole = np.array([[20.0, 20], [40, 20], [40, 40], [20, 40]])
    anns = [Annotation(np.array([[0.0, 0], [100, 0], [100, 100], [0, 100]]), TUMOR, (hole,)),
            Annotation(np.array([[200.0, 0], [250, 0], [250, 50]]), EXCLUSION)]
    write_geojson(tmp_path / "q.geojson", anns)
    data = json.loads((tmp_path / "q.geojson").read_text())
    assert data["type"] == "FeatureCollection" and len(data["features"]) == 2
    for feature, ann in zip(data["features"], anns):
        assert feature["type"] == "Feature" and isinstance(feature["id"], str)
        assert feature["properties"]["objectType"] == "annotation"
        cls = feature["properties"]["classification"]
        assert cls["name"] == {TUMOR: "Tumor", EXCLUSION: "Exclusion"}[ann.label]
        assert len(cls["color"]) == 3 and all(isinstance(v, int) for v in cls["color"])
        geometry = feature["geometry"]
        assert geometry["type"] == "Polygon"
        assert len(geometry["coordinates"]) == 1 + len(ann.holes)
        for ring in geometry["coordinates"]:
            assert ring[0] == ring[-1] and all(len(p) == 2 for p in ring)  # closed, [x, y]
    (tumor, excl) = read_geojson(tmp_path / "q.geojson")
    assert len(tumor.holes) == 1 and tumor.area == pytest.approx(100 * 100 - 20 * 20)
    mask = rasterize([tumor], (100, 100))
    assert not mask[30, 30] and mask[10, 10]


def test_geojson_multipolygon_offset_and_qupath_variants(tmp_path):
    feature = {"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [
        [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]],
        [[[20, 0], [30, 0], [30, 10], [20, 0]]]]},
        "properties": {"classification": {"name": "Ignore*", "colorRGB": -1}}}
    path = tmp_path / "bare.json"
    path.write_text(json.dumps([feature]))  # QuPath's "export as list" layout
    anns = read_geojson(path, offset=(1000, 2000))
    assert [a.label for a in anns] == [EXCLUSION, EXCLUSION]
    assert anns[0].exterior.min(axis=0).tolist() == [1000, 2000]
    write_geojson(tmp_path / "o.geojson", anns, offset=(1000, 2000))
    first = json.loads((tmp_path / "o.geojson").read_text())["features"][0]
    assert first["geometry"]["coordinates"][0][0] == [0.0, 0.0]


def test_fill_polygons_matches_point_in_polygon():
    rng = np.random.default_rng(1)
    for _ in range(40):
        rings = [rng.uniform(-10, 70, (int(rng.integers(3, 25)), 2)) for _ in range(2)]
        ds = float(rng.choice([1.0, 2.5]))
        mask = fill_polygons([rings], (30, 40), downsample=ds)
        for r, c in zip(rng.integers(0, 30, 60), rng.integers(0, 40, 60)):
            x, y = (c + 0.5) * ds, (r + 0.5) * ds
            expected = sum(inside(ring, x, y) for ring in rings) % 2 == 1
            assert mask[r, c] == expected


BAD_FILES = {
    "malformed.xml": ("<ASAP_Annotations><Annotations>", "not valid XML"),
    "other.xml": ("<?xml version='1.0'?><svg></svg>", "not an ASAP annotation file"),
    "notjson.geojson": ("{nope", "not valid JSON"),
    "wrong.geojson": ('{"type": "Point", "coordinates": [1, 2]}', "not GeoJSON annotations"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_annotation_files_give_one_line_errors(tmp_path, capsys, name):
    text, needle = BAD_FILES[name]
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError, match=needle):
        read_annotations(path)
    code, summary, err = run_main(capsys, "annotations", "convert", str(path), str(tmp_path / "out.xml"))
    assert code == 2 and summary is None
    assert err.count("\n") == 1 and err.startswith("error:") and name in err and needle in err
    assert "Traceback" not in err and not (tmp_path / "out.xml").exists()


def test_short_polygon_and_far_coordinates_warn_naming_file_and_annotation(tmp_path, capsys, small_synthetic):
    path = tmp_path / "mixed.xml"
    path.write_text(ASAP_TYPES.replace('<Coordinate Order="2" X="5" Y="8.25"/>', "")
                    .replace('X="140" Y="120"', 'X="900000" Y="120"'))
    code, summary, err = run_main(capsys, "annotations", "rasterize", str(path), "--slide", str(small_synthetic),
                                 "--downsample", "16", "-o", str(tmp_path / "m.png"))
    assert code == 0, err
    assert "mixed.xml: sp: 2 vertices, a polygon needs 3; skipped" in err
    assert "mixed.xml: rect: reaches" in err and "far outside the 3000 × 2200 slide" in err
    assert summary["polygons"] == {"tumor": 2, "exclusion": 0}
    assert "Traceback" not in err


def test_all_polygons_off_the_slide_is_an_error(tmp_path, capsys, small_synthetic):
    path = tmp_path / "elsewhere.xml"
    write_asap_xml(path, [np.array([[1e6, 1e6], [1e6 + 50, 1e6], [1e6, 1e6 + 50]])])
    code, _, err = run_main(capsys, "annotations", "rasterize", str(path), "--slide", str(small_synthetic),
                           "--level", "1", "-o", str(tmp_path / "m.png"))
    assert code == 2 and "none of its 1 polygons lies on" in err and not (tmp_path / "m.png").exists()


def test_cli_rasterize_level_writes_mask_and_sidecar(tmp_path, capsys, small_synthetic):
    from napari_lymphmet.tissue import load_mask
    from napari_lymphmet.wsi import open_slide

    path = tmp_path / "a.geojson"
    square = Annotation(np.array([[1000.0, 600], [1800, 600], [1800, 1400], [1000, 1400]]))
    write_annotations(path, [square])
    out = tmp_path / "tumor.png"
    code, summary, _ = run_main(capsys, "annotations", "rasterize", str(path), "--slide", str(small_synthetic),
                               "--level", "1", "-o", str(out))
    assert code == 0
    with open_slide(small_synthetic) as slide:
        w, h = slide.level_dimensions[1]
        ds = slide.level_downsamples[1]
    saved = load_mask(out)
    assert saved.mask.shape == (h, w) and saved.downsample == ds == summary["downsample"]
    assert saved.info["kind"] == "tumor"
    assert saved.mask.sum() == pytest.approx(800 * 800 / ds**2, rel=0.01)
    assert summary["tumor_area_um2"] == pytest.approx(800 * 800 * 0.25)
    assert summary["polygons"] == {"tumor": 1, "exclusion": 0}


def test_cli_convert_by_extension(tmp_path, capsys):
    code, summary, _ = run_main(capsys, "annotations", "convert", str(_need(C16)), str(tmp_path / "x.geojson"))
    assert code == 0 and summary["polygons"] == {"tumor": 2, "exclusion": 3}
    code, _, err = run_main(capsys, "annotations", "convert", str(C16), str(tmp_path / "x.txt"))
    assert code == 2 and "unknown annotation format" in err
