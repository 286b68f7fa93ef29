"""TensorFlow and Keras, imported once with their start-up chatter held back.

TensorFlow prints oneDNN, CUDA and absl lines from C++ straight to file
descriptor 2 while it loads, before any Python logging setting can reach
them (``TF_CPP_MIN_LOG_LEVEL`` does not silence the absl pre-init lines).
So the import runs with fd 2 pointed at a temporary file: if the import
fails, what it printed is replayed; otherwise it is dropped. Set
``LYMPHMET_DEBUG=1`` (the CLI's ``--debug``) to see everything.
"""


from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from types import ModuleType

__all__ = ["held_back_stderr", "import_keras", "import_tensorflow"]

_lock = threading.Lock()


def _verbose() -> bool:
    return os.environ.get("LYMPHMET_DEBUG", "") not in ("", "0")


def import_tensorflow() -> ModuleType:
    """``import tensorflow``, quietly the first time (see the module docstring)."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with _lock:
        if "tensorflow" not in sys.modules:
            _import_quietly()
    return sys.modules["tensorflow"]


def import_keras() -> ModuleType:
    """``import keras``, after :func:`import_tensorflow` so the backend loads quietly."""
    import_tensorflow()
    import keras as module

    return module


@contextlib.contextmanager
def held_back_stderr():
    """File descriptor 2 pointed at a temporary file for the block: what C++ prints there is dropped,
    or replayed if the block fails. A no-op with ``LYMPHMET_DEBUG``."""
    if _verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _import_quietly() -> None:
    if _verbose():
        import tensorflow  # noqa: F401
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no INFO/WARNING lines from C++ after the import either
    with held_back_stderr():
        import tensorflow as tf
        import keras  # noqa: F401  (loads the backend: the second round of chatter)

        tf.config.list_physical_devices()  # the CUDA probe (cuInit) logs too, on first use
    tf.get_logger().setLevel("ERROR")
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # absl comes with TensorFlow; this is only belt and braces
        pass
