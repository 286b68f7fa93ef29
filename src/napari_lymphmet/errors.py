"""Exceptions that mean "the input is bad", as opposed to a bug.

The CLI turns these into a one-line ``error: <file>: <problem>`` and exit
code 2; the napari shells turn them into a notification.
"""

from __future__ import annotations

__all__ = ["InputError", "ModelOutputError", "SlideError", "SlideReadError"]


class InputError(Exception):
    """A file, option or value given by the user cannot be used."""


class SlideError(InputError):
    """A path is not a readable whole-slide image."""


class SlideReadError(SlideError, OSError):
    """A region of an opened slide could not be read or decoded."""


class ModelOutputError(InputError):
    """A model gave something that is not one probability per patch: the model is wrong, not the slide."""
