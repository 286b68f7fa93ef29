"""napari widgets: thin magicgui shells over the core, one module each."""
