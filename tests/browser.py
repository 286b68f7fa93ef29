"""Open a page in headless Chromium and report what a reader sees of its images."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

__all__ = ["CHROMIUM", "inspect_images"]

CHROMIUM = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)

# After load: each image's natural size and, for images that carry
# data-axes, a SAMPLES × SAMPLES grid of the pixels inside that box, as the
# browser decoded them.
_PROBE = """<script>
window.addEventListener('load', () => {
  const SAMPLES = %d, out = [];
  for (const img of document.images) {
    const rec = {id: img.id, width: img.naturalWidth, height: img.naturalHeight};
    if (img.naturalWidth && img.dataset.axes) {
      const [x0, y0, x1, y1] = img.dataset.axes.split(',').map(Number);
      const c = document.createElement('canvas');
      c.width = img.naturalWidth; c.height = img.naturalHeight;
      const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
      rec.samples = [];
      for (let i = 0; i < SAMPLES; i++) {
        const row = [];
        for (let j = 0; j < SAMPLES; j++) {
          const x = Math.floor(x0 + (j + 0.5) * (x1 - x0) / SAMPLES);
          const y = Math.floor(y0 + (i + 0.5) * (y1 - y0) / SAMPLES);
          row.push(Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3)));
        }
        rec.samples.push(row);
      }
    }
    out.push(rec);
  }
  const pre = document.createElement('pre');
  pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def inspect_images(page: Path, work: Path, *, samples: int = 48) -> list[dict]:
    """``[{id, width, height, samples?}]`` for every ``<img>`` of ``page``, loaded in headless Chromium."""
    probe = work / f"probe-{page.name}"
    probe.write_text(page.read_text().replace("</body>", (_PROBE % samples) + "</body>"))
    done = subprocess.run([CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--allow-file-access-from-files",
                           "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                          capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, f"no probe output from Chromium: {done.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))
