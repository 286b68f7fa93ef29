"""A cohort at a glance: ``slides.csv`` and ``index.html`` over every slide's predict outputs.

Rows are sorted by slide score, most suspicious first; slides that failed
come last with their error, so one unreadable file never hides the rest.
"""


from __future__ import annotations

import base64
import csv
import html
import io
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..io import atomic_path
from .predict import SlideFailure, SlidePrediction

__all__ = ["CSV_COLUMNS", "CohortRow", "cohort_row", "write_cohort"]

CSV_COLUMNS = ("slide", "path", "slide_score", "detections", "tumor_area_mm2", "largest_lesion_mm", "category", "mpp",
               "seconds", "status")


@dataclass(frozen=True)
class CohortRow:
    """One slide of a cohort: its figures, or the error that stopped it (``status``)."""

    slide: str
    path: str
    slide_score: float | None
    detections: int | None
    tumor_area_mm2: float | None
    mpp: float | None
    seconds: float
    status: str  # "ok", or the error
    out_dir: str | None = None
    largest_lesion_mm: float | None = None
    category: str = "unknown"  # the node's, from its largest metastasis; unknown when not predicted


def cohort_row(done: SlidePrediction | SlideFailure) -> CohortRow:
    """The row of one :func:`~napari_lymphmet.workflows.predict_slides` result."""
    if isinstance(done, SlideFailure):
        return CohortRow(done.slide_id, done.slide, None, None, None, None, round(done.seconds, 2), done.error)
    import json

    info = json.loads(Path(done.paths["heatmap_json"]).read_text())
    mpp = info.get("mpp")
    return CohortRow(done.slide_id, done.slide, round(done.slide_score, 6), int(done.paths["n_detections"]),
                     None if info.get("tumor_area_mm2") is None else round(info["tumor_area_mm2"], 6),
                     None if mpp is None else round(float(mpp), 6), round(done.result.seconds, 2), "ok",
                     str(done.out_dir),
                     None if info.get("largest_lesion_mm") is None else round(info["largest_lesion_mm"], 3),
                     info.get("category", "unknown"))


def _order(rows: Sequence[CohortRow]) -> list[CohortRow]:
    return sorted(rows, key=lambda r: (r.status != "ok", -(r.slide_score or 0.0), r.slide))


def write_cohort(out: str | os.PathLike, rows: Sequence[CohortRow]) -> dict[str, str]:
    """Write ``out/slides.csv`` and ``out/index.html`` (each atomically); returns their paths."""
    out = Path(out)
    ordered = _order(rows)
    with atomic_path(out / "slides.csv") as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for row in ordered:
                writer.writerow({k: _csv_cell(v) for k, v in asdict(row).items()})
    with atomic_path(out / "index.html") as tmp:
        tmp.write_text(_page(out, ordered))
    return {"slides_csv": str(out / "slides.csv"), "index_html": str(out / "index.html")}


def _thumbnail(overlay: Path, *, width: int = 320) -> str | None:
    """The overlay, shrunk to ``width`` px as an embedded JPEG: the page stays small for hundreds of slides."""
    from PIL import Image

    if not overlay.is_file():
        return None
    with Image.open(overlay) as image:
        image = image.convert("RGB")
        image.thumbnail((width, width * 2))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _cell(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else html.escape(str(value))


def _page(out: Path, rows: Sequence[CohortRow]) -> str:
    body = []
    for rank, row in enumerate(rows, 1):
        folder = Path(row.out_dir) if row.out_dir else None
        src = _thumbnail(folder / "overlay.png") if folder else None
        link = os.path.relpath(folder, out) if folder else None
        picture = (f'<a href="{html.escape(link)}/overlay.png"><img class="thumb" alt="{html.escape(row.slide)}" '
                   f'src="{src}"></a>') if src else ""
        files = (f'<a href="{html.escape(link)}/">files</a> · <a href="{html.escape(link)}/tumor_regions.geojson">'
                 f'QuPath</a> · <a href="{html.escape(link)}/tumor_regions.xml">ASAP</a>') if link else ""
        status = "" if row.status == "ok" else f'<div class="error">{html.escape(row.status)}</div>'
        body.append(
            f'<tr data-name="{html.escape(row.slide.lower())}"><td>{rank}</td><td>{picture}</td>'
            f'<td><b>{html.escape(row.slide)}</b>{status}<div class="files">{files}</div></td>'
            f'<td class="num">{_cell(row.slide_score)}</td><td class="num">{_cell(row.detections)}</td>'
            f'<td class="num">{_cell(row.tumor_area_mm2, 4)}</td><td class="num">{_cell(row.largest_lesion_mm, 2)}</td>'
            f'<td>{html.escape(row.category)}</td><td class="num">{_cell(row.mpp)}</td>'
            f'<td class="num">{_cell(row.seconds, 1)}</td></tr>')
    ok = sum(r.status == "ok" for r in rows)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>napari-lymphmet: {len(rows)} slides</title>
<style>body{{font-family:sans-serif;margin:1.5em;color:#222}}table{{border-collapse:collapse}}
td,th{{border-bottom:1px solid #ddd;padding:6px 10px;vertical-align:top;text-align:left}}
td.num{{text-align:right;font-variant-numeric:tabular-nums}}img.thumb{{width:240px}}
.error{{color:#b00020;max-width:32em}}.files{{font-size:small;margin-top:.4em}}
#filter{{font-size:1em;padding:4px 8px;width:20em;margin:.5em 0 1em}}</style></head>
<body><h1>Tumor probability: {len(rows)} slides</h1>
<p>{ok} predicted, {len(rows) - ok} failed. Sorted by slide score (the highest 3 × 3-cell mean tumor
probability), most suspicious first. The same table is in <a href="slides.csv">slides.csv</a>.</p>
<input id="filter" type="search" placeholder="filter by slide name" oninput="filterRows(this.value)">
<table><thead><tr><th>#</th><th>heatmap</th><th>slide</th><th>score</th><th>detections</th>
<th>tumor area (mm²)</th><th>largest (mm)</th><th>node</th><th>µm/px</th><th>seconds</th></tr></thead>
<tbody>{''.join(body)}</tbody></table>
<script>
function filterRows(text) {{
  const needle = text.trim().toLowerCase();
  for (const row of document.querySelectorAll('tbody tr')) {{
    row.style.display = row.dataset.name.includes(needle) ? '' : 'none';
  }}
}}
</script></body></html>
"""


def _csv_cell(value):
    """A value safe in a spreadsheet: text starting with = + - @ or a tab/CR would run as a formula (OWASP's
    CSV injection), so it gets a leading apostrophe; numbers stay numbers."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
