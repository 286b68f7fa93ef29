"""The napari side: layer data, readers, sample data, widgets and their shared job helper.

Nothing outside this package imports it, except ``cli`` for ``demo --open``.
"""
