"""Running a trained model fast: ONNX Runtime where it is installed, TensorFlow otherwise.

A ``.keras`` model stays the one file users train, share and load (in
Keras safe mode). For inference it is exported once to ONNX and run by ONNX
Runtime, which runs our small CNNs about 3.5 times faster than an eager
Keras call and 1.9 times faster than a traced one on 2 CPU cores (measured
in ``benchmarks/runtime.py``), and needs no TensorFlow in the process.

The export is made from the exact model file and is checked against Keras
on a batch (within :data:`TOLERANCE`) before it is kept. It is kept beside
the model as ``<name>.onnx`` (the bundled models ship theirs) or in the
user's cache, keyed by the model file's SHA-256, so a changed model file is
never run with a stale export. Without ``onnxruntime`` (or with
``runtime="tensorflow"``) the model runs in TensorFlow, traced once.
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..io import atomic_path
from .card import ModelCard, read_card
from .onnx_fusion import fuse_patch_standardisation
from .registry import resolve_model

__all__ = ["RUNTIMES", "TOLERANCE", "OnnxRunner", "TensorFlowRunner", "as_runner", "available_runtime", "export_onnx",
           "load_runner", "onnx_cache_dir", "write_onnx_beside"]

RUNTIMES = ("auto", "onnx", "tensorflow")
# The largest difference in probability an export may show against Keras on its check batch.
TOLERANCE = 1e-4
_SOURCE_KEY = "lymphmet_source_sha256"  # the model file an ONNX export was made from (its metadata)
_VERSION_KEY = "lymphmet_export"  # how it was made: older exports are made again, as they may be slower
_EXPORT_VERSION = "3"  # 2: the per-patch standardisation fused; 3: every one of them (each member of an ensemble)
_OPSET = 17


def available_runtime() -> str:
    """The runtime ``auto`` picks on this machine: ``"onnx"`` where ONNX Runtime imports, else ``"tensorflow"``."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return "tensorflow"
    return "onnx"


def onnx_cache_dir() -> Path:
    """Where exports of models without one beside them are kept (``LYMPHMET_CACHE_DIR``, else the XDG cache)."""
    root = os.environ.get("LYMPHMET_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "napari-lymphmet")
    return Path(root) / "onnx"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- runners --------------------------------------------------------------------------
class TensorFlowRunner:
    """A Keras model called through one traced graph: ``runner(x) -> (N, 1)`` probabilities.

    A traced call is about twice as fast as Keras's eager ``model(x)`` on
    batches of small patches; ``reduce_retracing`` keeps one trace for every
    batch size.
    """

    name = "tensorflow"

    def __init__(self, model: Any) -> None:
        from ._tensorflow import held_back_stderr, import_tensorflow

        tf = import_tensorflow()
        self.model = model
        self._call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        shape = tuple(getattr(model, "input_shape", None) or ())
        if len(shape) == 4 and all(isinstance(side, int) for side in shape[1:]):
            with held_back_stderr():  # the first trace and run start TensorFlow's runtime, which logs in C++
                self._call(np.zeros((1, *shape[1:]), np.float32))

    def __call__(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        return np.asarray(self._call(np.asarray(x, np.float32)))


class OnnxRunner:
    """An ONNX model in ONNX Runtime's CPU provider: ``runner(x) -> (N, 1)`` probabilities.

    ``threads`` (default: the CPUs this process may use) is ONNX Runtime's
    intra-op pool; its threads do not spin while waiting, so the slide
    reader threads beside it get the cores between batches.
    """

    name = "onnx"

    def __init__(self, model: bytes | str | os.PathLike, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or _cpus()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: its warnings are not the user's business
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name

    @property
    def input_shape(self) -> tuple:
        return tuple(self.session.get_inputs()[0].shape)

    @property
    def output_shape(self) -> tuple:
        return tuple(self.session.get_outputs()[0].shape)

    def __call__(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        return self.session.run(None, {self._input: np.ascontiguousarray(x, np.float32)})[0]


def as_runner(model: Any) -> Any:
    """``model`` if it is already a runner, else the Keras model traced once (:class:`TensorFlowRunner`).

    Whole-slide inference calls the model thousands of times; an eager
    Keras call would run at half the speed.
    """
    return model if isinstance(model, (OnnxRunner, TensorFlowRunner)) else TensorFlowRunner(model)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# -- export ----------------------------------------------------------------------------
def export_onnx(model: Any, card: ModelCard, *, source_sha256: str = "") -> bytes:
    """The ONNX serialisation of a Keras model taking ``(N, s, s, 3)`` prepared patches, checked against Keras.

    Raises
    ------
    RuntimeError
        The export gives other probabilities than Keras (beyond :data:`TOLERANCE`).
    """
    import onnx
    import tf2onnx

    from ._tensorflow import import_tensorflow

    tf = import_tensorflow()
    size = card.input_size
    signature = (tf.TensorSpec((None, size, size, 3), tf.float32, name="patches"),)
    with _quiet_stdout():
        proto, _ = tf2onnx.convert.from_function(tf.function(lambda x: model(x, training=False)),
                                                 input_signature=signature, opset=_OPSET)
    onnx.helper.set_model_props(proto, {_SOURCE_KEY: source_sha256, _VERSION_KEY: _EXPORT_VERSION})
    # Patches as the model sees them: optical densities, or RGB in [0, 255] (where an ensemble takes
    # the logarithm of its input, so no negative values).
    rng = np.random.default_rng(0)
    x = (rng.uniform(0, 255, (16, size, size, 3)) if card.input_space == "rgb"
         else rng.normal(0.5, 0.5, (16, size, size, 3))).astype(np.float32)
    expected = np.asarray(model(x, training=False))
    plain = proto.SerializeToString()
    fused = fuse_patch_standardisation(proto)
    for data in ((proto.SerializeToString(), plain) if fused else (plain,)):
        try:
            difference = float(np.max(np.abs(OnnxRunner(data, threads=1)(x) - expected)))
        except Exception:  # a fused graph ONNX Runtime refuses: the plain one is next
            if data is plain:
                raise
            continue
        if difference <= TOLERANCE:
            return data
    raise RuntimeError(f"the ONNX export differs from Keras by {difference:.2g} (tolerance {TOLERANCE:g})")


class _quiet_stdout:
    """tf2onnx logs its progress on stdout, which belongs to the CLI's JSON."""

    def __enter__(self):
        import logging

        self._level = logging.getLogger("tf2onnx").level
        logging.getLogger("tf2onnx").setLevel(logging.ERROR)
        self._stdout, sys.stdout = sys.stdout, sys.stderr

    def __exit__(self, *exc) -> None:
        import logging

        sys.stdout = self._stdout
        logging.getLogger("tf2onnx").setLevel(self._level)


def _stored_export(path: Path, sha256: str, threads: int | None = None) -> OnnxRunner | None:
    """A session on an ONNX export of exactly this model file, beside it or in the cache, or None."""
    for candidate in (path.with_suffix(".onnx"), onnx_cache_dir() / f"{sha256}.onnx"):
        if not candidate.is_file():
            continue
        try:
            runner = OnnxRunner(candidate, threads=threads)
        except Exception:  # a damaged cache file is only made again
            continue
        made = runner.session.get_modelmeta().custom_metadata_map
        if made.get(_SOURCE_KEY) == sha256 and made.get(_VERSION_KEY) == _EXPORT_VERSION:
            return runner
    return None


def _keep_export(data: bytes, sha256: str) -> None:
    folder = onnx_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / f"{sha256}.onnx") as tmp:
            Path(tmp).write_bytes(data)
    except OSError:  # a read-only home: the export is made again next time, nothing worse
        pass


def write_onnx_beside(path: str | os.PathLike) -> Path:
    """Export the model at ``path`` to ``<name>.onnx`` beside it (how the bundled models ship theirs)."""
    from .io import load_model

    path = resolve_model(path)
    model, card = load_model(path)
    data = export_onnx(model, card, source_sha256=_sha256(path))
    with atomic_path(path.with_suffix(".onnx")) as tmp:
        Path(tmp).write_bytes(data)
    return path.with_suffix(".onnx")


# -- loading ---------------------------------------------------------------------------
def load_runner(path: str | os.PathLike | None, *, runtime: str = "auto",
                threads: int | None = None) -> tuple[Any, ModelCard]:
    """The model at ``path`` (a ``.keras`` file or a bundled name) ready to score prepared batches.

    ``runtime`` ``"auto"`` takes ONNX Runtime where it is installed and the
    export succeeds, else TensorFlow; ``"onnx"`` insists on ONNX Runtime;
    ``"tensorflow"`` never uses it. The runner's ``name`` says which runs.
    ``threads`` sizes ONNX Runtime's pool (default: the CPUs this process
    may use). Only when no export of this file is stored does TensorFlow load (once,
    to make it).

    Returns
    -------
    runner : OnnxRunner or TensorFlowRunner
        ``runner(x)`` gives ``(N, 1)`` probabilities for ``(N, s, s, 3)``
        batches from :func:`prepare_batch`.
    card : ModelCard

    Raises
    ------
    InputError
        A bad model file, or ``runtime="onnx"`` where ONNX Runtime is not
        installed or cannot run this model.
    """
    from .io import load_model

    if runtime not in RUNTIMES:
        raise InputError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    path = resolve_model(path)
    if runtime == "onnx" and available_runtime() != "onnx":
        raise InputError("--runtime onnx needs ONNX Runtime: pip install onnxruntime")
    if runtime == "tensorflow" or available_runtime() == "tensorflow":
        model, card = load_model(path)
        return TensorFlowRunner(model), card
    card = read_card(path)
    sha256 = _sha256(path)
    runner = _stored_export(path, sha256, threads)
    if runner is not None:
        _check_onnx_signature(runner, card, path)
        return runner, card
    model, card = load_model(path)  # checks the file, in safe mode, before anything is exported from it
    try:
        data = export_onnx(model, card, source_sha256=sha256)
    except ImportError as exc:
        problem = f"cannot export to ONNX ({exc.name} is not installed)"
    except Exception as exc:  # an op tf2onnx cannot convert, or an export that disagrees with Keras
        problem = f"cannot export to ONNX ({' '.join(str(exc).split())[:200]})"
    else:
        _keep_export(data, sha256)
        return OnnxRunner(data, threads=threads), card
    if runtime == "onnx":
        raise InputError(f"{path}: {problem}; use --runtime tensorflow")
    warnings.warn(f"{path}: {problem}; running it in TensorFlow", RuntimeWarning, stacklevel=2)
    return TensorFlowRunner(model), card


def _check_onnx_signature(runner: OnnxRunner, card: ModelCard, path: Path) -> None:
    shape, out = runner.input_shape, runner.output_shape
    size = card.input_size
    if len(shape) != 4 or shape[3] != 3 or any(side not in (size,) and not isinstance(side, str)
                                               for side in shape[1:3]):
        raise InputError(f"{path}: its ONNX export takes input of shape {shape}, not (batch, {size}, {size}, 3); "
                         f"delete {path.with_suffix('.onnx')} or the cache in {onnx_cache_dir()}")
    if len(out) != 2 or out[1] != 1:
        raise InputError(f"{path}: its ONNX export gives output of shape {out}, not (batch, 1)")
