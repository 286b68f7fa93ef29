"""``python -m napari_lymphmet.cli``: the same as the ``lymphmet`` command."""

from . import main

raise SystemExit(main())
