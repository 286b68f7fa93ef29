"""The ``lymphmet`` argument parser: every command, its options and its help."""


from __future__ import annotations

import argparse
import math

from .. import __version__
from .slides import _annotations_convert, _annotations_rasterize, _info, _mask, _synth
from .learning import _ensemble, _finetune, _models, _patches, _score, _train
from .predict import _demo, _evaluate, _predict, _stage

__all__ = ['build_parser']


def _number(kind, low=None, high=None, *, low_open=False, high_open=False, what=""):
    """An argparse type: a finite ``kind`` (int or float) within [low, high] (open ends where asked).

    A bad value is refused by argparse itself, in one line naming the option, before anything runs.
    """
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what or ('a whole number' if kind is int else 'a number')}"
                                             f", got {text!r}") from None
        bad = not math.isfinite(value) or (low is not None and (value <= low if low_open else value < low)) \
            or (high is not None and (value >= high if high_open else value > high))
        if bad:
            lo = "" if low is None else f"{'>' if low_open else '≥'} {low:g}"
            hi = "" if high is None else f"{'<' if high_open else '≤'} {high:g}"
            raise argparse.ArgumentTypeError(f"expected a {'whole ' if kind is int else ''}number "
                                             f"{' and '.join(t for t in (lo, hi) if t)}, got {text!r}")
        return value

    parse.__name__ = what or kind.__name__  # argparse names the type in its messages
    return parse


POSITIVE_INT = _number(int, 1)
NON_NEGATIVE_INT = _number(int, 0)
POSITIVE = _number(float, 0, low_open=True)
NON_NEGATIVE = _number(float, 0)
FRACTION = _number(float, 0, 1)
PROBABILITY = _number(float, 0, 1, what="a probability")
BYTE = _number(int, 0, 255)


def _saturation(text: str) -> float | None:
    if text == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number in [0, 1], got {text!r}") from None


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number ≥ 0, got {text!r}")
    return value


def _smooth_option(p: argparse.ArgumentParser, what: str = "") -> None:
    p.add_argument("--smooth", type=_non_negative, default=None, metavar="PATCHES",
                   help=(what + ": " if what else "") + "detect on the heatmap smoothed by a Gaussian this many patch "
                        "widths wide, so a lone false alarm fades and a lesion stays (default 1; 0: the raw heatmap)")


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line, ``error: <command>: <what>``, exit 2: no usage block in front."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lymphmet",
        description="Find lymph-node metastases in whole-slide images.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--events", action="store_true",
                        help="progress as JSON lines on stdout before the summary (for the napari plugin and other "
                             "front ends)")
    parser.add_argument("--nice", type=NON_NEGATIVE_INT, default=0, metavar="N",
                        help="run at a lower CPU priority (N as for nice(1)), so a window beside it stays responsive")
    # -q and --debug also work after the command name.
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", parents=[common], help="print a slide's levels, mpp and metadata")
    p.add_argument("slide", help="a whole-slide image in any format OpenSlide reads")
    p.set_defaults(func=_info)

    p = sub.add_parser("synth", parents=[common], help="write a synthetic lymph-node slide with its tumor XML",
                       description="Write a deterministic, H&E-like synthetic lymph-node slide "
                                   "(pyramidal JPEG TIFF) and an ASAP XML of its metastases beside it.")
    p.add_argument("-o", "--output", required=True, help="the slide to write, e.g. slide.tif")
    p.add_argument("--size", type=POSITIVE_INT, default=20_000, help="width in level-0 px (default 20000)")
    p.add_argument("--height", type=POSITIVE_INT, default=None, help="height in px (default: --size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lesions", type=NON_NEGATIVE_INT, default=3, help="metastases to place (default 3)")
    p.add_argument("--mpp", type=POSITIVE, default=0.25, help="µm per level-0 px (default 0.25)")
    p.add_argument("--mask", default=None, help="also write the true tissue mask (PNG, downsample 16)")
    p.add_argument("--no-artefacts", action="store_true", help="no pen mark, dust or fold")
    p.set_defaults(func=_synth)

    p = sub.add_parser("mask", parents=[common], help="detect tissue; write a 0/255 mask PNG + JSON sidecar",
                       description="Detect tissue on a low-resolution level of a slide (HSV saturation, "
                                   "minus ink, pen and debris) and write it as a mask.")
    p.add_argument("slide")
    p.add_argument("-o", "--output", required=True, help="mask file, .png or .tif")
    res = p.add_mutually_exclusive_group()
    res.add_argument("--mpp", type=POSITIVE, default=8.0, help="working resolution, µm/px (default 8)")
    res.add_argument("--downsample", type=_number(float, 1), default=None,
                     help="working downsample, level-0 px per mask px")
    p.add_argument("--saturation", type=_saturation, default=None, metavar="auto|S",
                   help="saturation threshold in [0, 1], or auto (Otsu, the default)")
    p.add_argument("--dark", type=BYTE, default=50, help="reject pixels with max(RGB) below this (ink)")
    p.add_argument("--bright", type=BYTE, default=235, help="reject pixels with min(RGB) above this (glass)")
    p.add_argument("--no-pen-filter", action="store_true", help="keep blue/green hues")
    p.add_argument("--median", type=POSITIVE_INT, default=5, help="majority filter size, mask px (default 5)")
    p.add_argument("--close", type=NON_NEGATIVE_INT, default=2, help="closing radius, mask px (default 2)")
    p.add_argument("--no-fill-holes", action="store_true")
    p.add_argument("--min-area-um2", type=NON_NEGATIVE, default=20_000.0,
                   help="drop objects smaller than this (default 20000 µm²)")
    p.add_argument("--min-area-px", type=NON_NEGATIVE_INT, default=64,
                   help="the same in mask px, for slides without mpp")
    p.set_defaults(func=_mask)

    p = sub.add_parser("patches", parents=[common], help="export labelled training patches (ImageFolder + patches.csv)")
    p.add_argument("slides", nargs="+", metavar="SLIDE")
    p.add_argument("-o", "--output", required=True, help="output folder (tumor/, normal/, patches.csv)")
    p.add_argument("--annotations", help="an XML/GeoJSON, or a folder of them named after the slides")
    p.add_argument("--mask", help="a saved tissue mask, or a folder of them named after the slides "
                                  "(default: detect tissue)")
    res = p.add_mutually_exclusive_group()
    res.add_argument("--mpp", type=POSITIVE, default=0.5, help="patch resolution, µm/px (default 0.5)")
    res.add_argument("--level", type=NON_NEGATIVE_INT, default=None, help="read this level as is (slides without mpp)")
    p.add_argument("--size", type=_number(int, 8), default=256)
    p.add_argument("--stride", type=POSITIVE_INT, default=None, help="grid step in patch px (default: --size)")
    p.add_argument("--min-tissue", type=FRACTION, default=0.5, help="minimum tissue fraction (default 0.5)")
    p.add_argument("--label-rule", default="center", help="center (default) or fraction:T")
    p.add_argument("--max-per-class", type=POSITIVE_INT, default=None, help="sample at most N per class and slide")
    p.add_argument("--balance", action="store_true", help="sample normals down to the tumor count")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=("png", "jpeg"), default="png")
    p.add_argument("--workers", type=POSITIVE_INT, default=None, help="threads (default: cores + 1)")
    p.set_defaults(func=_patches)

    from ..model import BACKBONES

    p = sub.add_parser("train", parents=[common], help="train a tumor/normal patch classifier (.keras)")
    p.add_argument("data", nargs="+", metavar="DATA", help="ImageFolders (tumor/, normal/) or patches.csv files")
    p.add_argument("-o", "--output", required=True, help="model file, e.g. model.keras")
    p.add_argument("--val", nargs="+", default=None, help="validation data from other slides "
                                                          "(default: hold out whole slides of DATA)")
    p.add_argument("--val-fraction", type=_number(float, 0, 1, high_open=True), default=0.25,
                   help="share of patches held out by slide (0: none)")
    p.add_argument("--backbone", choices=BACKBONES, default="efficientnetb0")
    p.add_argument("--weights", default="imagenet",
                   help="imagenet, none, a weights file, or a model (.keras or bundled name) to fine-tune")
    p.add_argument("--epochs", type=POSITIVE_INT, default=None,
                   help="default: from the data size (about 6000 steps; 8 to 200 epochs)")
    p.add_argument("--batch-size", type=POSITIVE_INT, default=32)
    p.add_argument("--learning-rate", type=POSITIVE, default=1e-3)
    p.add_argument("--input-size", type=_number(int, 8), default=None,
                   help="model input px (default 224; small-cnn: the patch size, at most 128)")
    p.add_argument("--patch-mpp", type=POSITIVE, default=None, help="µm/px of the patches, when no patches.csv says")
    p.add_argument("--stain-norm", choices=("none", "reinhard"), default="none")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--patience", type=POSITIVE_INT, default=None,
                   help="stop after this many epochs without a better validation AUC (default: run the whole "
                        "schedule and keep the best epoch)")
    p.add_argument("--time-limit", type=NON_NEGATIVE, default=None, metavar="MINUTES",
                   help="fit the epochs into this many minutes, as each epoch is timed (default: 25 unless "
                        "--epochs is given; 0: no limit)")
    p.add_argument("--ema", type=_number(float, 0, 1, high_open=True), default=0.0, metavar="MOMENTUM",
                   help="validate and save a moving average of the weights with this momentum (e.g. 0.998), not "
                        "the last step's (default 0: off; not when fine-tuning a model)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_train)

    p = sub.add_parser("models", parents=[common], help="list the bundled models and the default")
    p.set_defaults(func=_models)

    p = sub.add_parser("score", parents=[common], help="score a model on a labelled ImageFolder")
    p.add_argument("model", help="a .keras file or a bundled model's name")
    p.add_argument("data", nargs="+", metavar="DIR")
    p.add_argument("--no-tta", dest="tta", action="store_false",
                   help="score each patch once, not as the mean over its 8 rotations and mirrorings")
    p.set_defaults(func=_score)

    p = sub.add_parser("ensemble", parents=[common], help="join trained models into one (the mean of their logits)",
                       description="Join two or more trained models into one .keras model that gives the sigmoid "
                                   "of their mean logit, each member reading the patch in its own input space. "
                                   "Its thresholds are measured on --val, patches from slides none of them "
                                   "trained on.")
    p.add_argument("models", nargs="+", metavar="MODEL", help=".keras files or bundled models' names (two or more)")
    p.add_argument("--val", nargs="+", required=True, metavar="DIR",
                   help="labelled patches (tumor/ and normal/, or patches.csv) for the thresholds")
    p.add_argument("-o", "--output", required=True, help="the ensemble (.keras)")
    p.set_defaults(func=_ensemble)

    p = sub.add_parser("finetune", parents=[common], help="fine-tune a model on a pathologist's corrections",
                       description="Fine-tune a model on corrections drawn on slides: tumor polygons, and not-tumor "
                                   "ones (ASAP group _2, GeoJSON class Exclusion) for false positives. Writes a new "
                                   "model; refuses one worse than its parent on a held-out replay set (exit 1).")
    p.add_argument("model", help="a .keras file or a bundled model's name")
    p.add_argument("--slide", action="append", required=True, metavar="SLIDE",
                   help="a slide the corrections were drawn on (repeat with --corrections for more slides)")
    p.add_argument("--corrections", action="append", required=True, metavar="FILE",
                   help="ASAP XML or GeoJSON of that slide's corrections")
    p.add_argument("-o", "--output", required=True, help="the new model (.keras); never the bundled one")
    p.add_argument("--epochs", type=NON_NEGATIVE_INT, default=3,
                   help="default 3; 0 keeps the weights and only sets the threshold from the corrections")
    p.add_argument("--threshold-from", choices=("corrections", "validation"), default="corrections",
                   help="the new model's detection threshold: between the outlined lesions' and false positives' "
                        "peak scores (default), or where held-out patches are best separated")
    p.add_argument("--replay", action="append", default=[], metavar="DIR",
                   help="labelled patches (tumor/ and normal/, or patches.csv) to replay so the model does not "
                        "forget (default for the bundled model: its training data, when on disk)")
    p.add_argument("--margin", type=FRACTION, default=0.03,
                   help="largest drop in replay accuracy or AUC accepted (default 0.03)")
    p.add_argument("--max-patches", type=POSITIVE_INT, default=400, metavar="N",
                   help="correction patches per class and slide, at most (default 400)")
    p.add_argument("--replay-patches", type=NON_NEGATIVE_INT, default=400, metavar="N",
                   help="patches per class taken from each --replay folder (default 400)")
    p.add_argument("--batch-size", type=POSITIVE_INT, default=32)
    _smooth_option(p, what="the detection smoothing the new threshold is for (as predict's)")
    p.set_defaults(func=_finetune)

    p = sub.add_parser("predict", parents=[common], help="tumor heatmap, detections and slide score")
    p.add_argument("slides", nargs="+", metavar="SLIDE")
    p.add_argument("--model", default=None,
                   help="a .keras model from lymphmet train, or a bundled model's name (default: the bundled "
                        "default; see lymphmet models)")
    p.add_argument("-o", "--output", required=True, help="output folder (one subfolder per slide when several)")
    p.add_argument("--mask", help="a saved tissue mask, or a folder of them named after the slides")
    p.add_argument("--stride", type=POSITIVE_INT, default=None, help="grid step in patch px (default: the patch size)")
    p.add_argument("--batch-size", type=POSITIVE_INT, default=64)
    p.add_argument("--threshold", type=PROBABILITY, default=None, help="detection threshold (default: the model's)")
    p.add_argument("--detect", choices=("components", "peaks"), default="components")
    _smooth_option(p)
    p.add_argument("--screen", action="store_true",
                   help="coarse-to-fine: predict every 2nd cell, then only around those at or above "
                        "--screen-threshold; the rest take their neighbours' mean (counts in heatmap.json)")
    p.add_argument("--screen-threshold", type=PROBABILITY, default=None, metavar="P",
                   help="with --screen, the probability whose neighbourhood is predicted in full (default: the "
                        "score 97 %% of the model's validation tumor patches reach, at most its detection threshold)")
    p.add_argument("--node-gate", type=PROBABILITY, default=None, metavar="LEVEL",
                   help="a node is negative when its slide score is under what this share of tumor-free nodes "
                        "with its tissue reach, simulated from the model's validation normal patches (default "
                        "0.95; 0: off, the category is the largest detection's)")
    p.add_argument("--tta", type=int, choices=(1, 4, 8), default=1, metavar="1|4|8",
                   help="views per patch, averaged: 1 (default), 4 rotations, or 8 rotations and mirrorings; "
                        "each view costs one more pass of the model (see docs/models.md for what it buys)")
    p.add_argument("--runtime", choices=("auto", "onnx", "tensorflow"), default="auto",
                   help="what runs the model: auto (default: ONNX Runtime where installed, about twice "
                        "TensorFlow's speed on CPUs), onnx, or tensorflow; lymphmet models says which auto picks")
    p.add_argument("--scheduler", default=None, help="tcp://host:8786 of a dask cluster, or local")
    p.add_argument("--workers", type=POSITIVE_INT, default=2, help="worker processes for --scheduler local")
    p.set_defaults(func=_predict)

    p = sub.add_parser("stage", parents=[common], help="each patient's pN stage from a predicted cohort's nodes "
                                                       "(and kappa against a truth table)",
                       description="Group a predicted cohort's slides (lymph nodes) by patient and stage each as "
                                   "CAMELYON17 did: pN0, pN0(i+), pN1mi, pN1, pN2 (pN3 from 10 nodes), from each "
                                   "node's largest metastasis (itc ≤ 0.2 mm < micro ≤ 2 mm < macro).")
    p.add_argument("predictions", help="the folder lymphmet predict wrote over a cohort (its slides.csv)")
    p.add_argument("--patients", default=None, help="patient,slide rows (default: slides named patient_NNN_node_N)")
    p.add_argument("-o", "--output", required=True, help="stages.csv to write")
    p.add_argument("--truth", default=None, metavar="CSV",
                   help="patient,stage truth: report CAMELYON17's quadratic-weighted kappa")
    p.add_argument("--node-truth", default=None, metavar="CSV",
                   help="slide,category truth: report the confusion of node categories")
    p.set_defaults(func=_stage)

    p = sub.add_parser("evaluate", parents=[common], help="CAMELYON16 lesion FROC and slide AUC")
    p.add_argument("--detections", required=True, help="folder of <id>/detections.csv (predict's output) or <id>.csv")
    p.add_argument("--truth", required=True, help="folder of <id>.xml; a slide without one is normal")
    p.add_argument("--slides", help="folder of the slides, for dimensions and mpp")
    p.add_argument("--scores", help="slide scores: CSV slide,score or predict's JSON summary "
                                    "(default: from each heatmap.tif)")
    p.add_argument("--mpp", type=POSITIVE, default=None, help="override the slides' µm/px (default theirs, else 0.243)")
    p.add_argument("-o", "--output", help="FROC plot (default DETECTIONS/froc.png)")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("demo", parents=[common], help="the whole pipeline on built-in synthetic slides")
    p.add_argument("-o", "--output", default="lymphmet-demo", help="output folder (default lymphmet-demo)")
    p.add_argument("--size", type=_number(int, 1024), default=12288,
                   help="slide side in px at 0.5 µm/px (default 12288)")
    p.add_argument("--epochs", type=POSITIVE_INT, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--open", action="store_true", help="then open the test slide and results in napari")
    p.set_defaults(func=_demo)

    ann = sub.add_parser("annotations", parents=[common], help="convert or rasterize tumor annotations")
    ann_sub = ann.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = ann_sub.add_parser("convert", parents=[common], help="ASAP XML <-> QuPath GeoJSON, by file extension")
    p.add_argument("input", help="annotations: .xml (ASAP) or .geojson (QuPath)")
    p.add_argument("output", help="where to write: .xml or .geojson")
    p.add_argument("--slide", help="the slide, for --qupath-bounds")
    p.add_argument("--qupath-bounds", action="store_true",
                   help="GeoJSON coordinates are relative to the slide's bounds (QuPath, e.g. for MRXS)")
    p.set_defaults(func=_annotations_convert)
    p = ann_sub.add_parser("rasterize", parents=[common], help="write a tumor mask (0/255 PNG + JSON sidecar)")
    p.add_argument("input", help="annotations: .xml (ASAP) or .geojson (QuPath)")
    p.add_argument("--slide", required=True, help="the slide they belong to")
    scale = p.add_mutually_exclusive_group(required=True)
    scale.add_argument("--downsample", type=_number(float, 1), help="level-0 px per mask px, e.g. 32")
    scale.add_argument("--level", type=NON_NEGATIVE_INT, help="match this pyramid level's size")
    p.add_argument("-o", "--output", required=True, help="mask file, .png or .tif")
    p.add_argument("--qupath-bounds", action="store_true",
                   help="GeoJSON coordinates are relative to the slide's bounds")
    p.set_defaults(func=_annotations_rasterize)
    return parser
