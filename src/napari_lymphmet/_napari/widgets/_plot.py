"""A tiny line plot drawn into an RGB array, for live training curves without matplotlib."""


from __future__ import annotations

import numpy as np

__all__ = ['COLOURS', 'line_plot']

COLOURS = {"loss": (230, 120, 40), "val_loss": (240, 190, 60), "val_auc": (60, 160, 240), "auc": (120, 200, 120)}


def line_plot(series: dict[str, list[float]], *, height: int = 160, width: int = 320) -> np.ndarray:
    """``(height, width, 3) uint8``: each series scaled to [0, max(1, its max)], epochs along x.

    Parameters
    ----------
    series : dict of str to list of float
        One value per epoch; colours from ``COLOURS``.
    """
    from skimage.draw import line_aa

    image = np.full((height, width, 3), 32, np.uint8)
    pad = 8
    image[pad:height - pad, pad] = image[height - pad, pad:width - pad] = 128  # axes
    longest = max((len(v) for v in series.values()), default=0)
    for name, values in series.items():
        values = np.asarray([v for v in values if np.isfinite(v)], float)
        if len(values) == 0:
            continue
        top = max(1.0, float(values.max()))
        xs = pad + (np.arange(len(values)) / max(longest - 1, 1)) * (width - 2 * pad - 1)
        ys = height - pad - values / top * (height - 2 * pad - 1)
        colour = np.array(COLOURS.get(name, (220, 220, 220)), float)
        points = list(zip(ys.round().astype(int), xs.round().astype(int)))
        for (r0, c0), (r1, c1) in zip(points, points[1:] or points):
            rr, cc, val = line_aa(r0, c0, r1, c1)
            ok = (rr >= 0) & (rr < height) & (cc >= 0) & (cc < width)
            blend = image[rr[ok], cc[ok]] * (1 - val[ok, None]) + colour * val[ok, None]
            image[rr[ok], cc[ok]] = blend.astype(np.uint8)
        for r, c in points:
            image[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2] = colour
    return image
