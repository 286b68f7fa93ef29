"""Deprecated: ``napari_lymphmet.slide`` moved to :mod:`napari_lymphmet.wsi`.

``from napari_lymphmet import open_slide, Slide`` is the public way, and
keeps working; this module stays one release for code that imported it.
"""

from __future__ import annotations

import warnings

from .wsi import DEFAULT_CACHE_BYTES, Slide, open_slide

__all__ = ["DEFAULT_CACHE_BYTES", "Slide", "open_slide"]

warnings.warn("napari_lymphmet.slide is deprecated; import open_slide and Slide from napari_lymphmet "
              "(or napari_lymphmet.wsi)", DeprecationWarning, stacklevel=2)
