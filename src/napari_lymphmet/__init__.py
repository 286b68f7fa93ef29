"""napari-lymphmet: find lymph-node metastases in whole-slide images."""

from __future__ import annotations

from .errors import InputError, SlideError, SlideReadError
from .wsi import Slide, open_slide

__version__ = "0.3.0"

__all__ = ["InputError", "Slide", "SlideError", "SlideReadError", "open_slide", "__version__"]
