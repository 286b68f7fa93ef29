"""napari widgets: thin magicgui shells over the core, one module each."""


__all__ = ['PLUGIN']

PLUGIN = "napari-lymphmet"  # the npe2 manifest's name: napari's menu opens widgets by it
