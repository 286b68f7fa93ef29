"""Several patch classifiers as one model: the mean of their logits.

Networks that read a patch differently (RGB against haematoxylin/eosin
optical densities) err on different patches, so the mean of their logits
separates tumor from normal tissue better than either alone
(docs/models.md). Built as one Keras model that takes RGB patches, with
each member's input space inside it, so everything downstream (the ONNX
export, ``predict``, test-time augmentation, the screening threshold,
``finetune``) treats it as any other model, in one pass a batch.

Its layers (:mod:`.ensemble_layers`) are registered Keras classes, so an
ensemble loads in safe mode.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InputError
from ._tensorflow import import_keras
from .architectures import ENSEMBLE_BACKBONE
from .card import ModelCard
from .ensemble_layers import MeanLogit, OpticalDensity

__all__ = ["ENSEMBLE_BACKBONE", "MeanLogit", "OpticalDensity", "build_ensemble", "save_ensemble"]

keras = import_keras()


def build_ensemble(members: Sequence[tuple[object, ModelCard]], *, name: str = "lymphmet_ensemble"):
    """One model that takes the members' RGB patches and gives the sigmoid of their mean logit.

    Parameters
    ----------
    members : sequence of (keras.Model, ModelCard)
        Two or more trained patch classifiers, each ``(N, s, s, 3) → (N, 1)``,
        for the same patch size and resolution. A member whose card reads
        optical densities gets an :class:`OpticalDensity` layer in front.

    Returns
    -------
    keras.Model
        ``(N, s, s, 3)`` RGB in [0, 255] → ``(N, 1)``; its card's
        ``input_space`` is ``rgb``.

    Raises
    ------
    InputError
        Fewer than two members, or members of different input sizes,
        patch sizes or resolutions, or with a stain normalisation that
        lives outside the model.
    """
    if len(members) < 2:
        raise InputError("an ensemble needs at least two models")
    first = members[0][1]
    for _, card in members:
        if (card.input_size, card.patch_size) != (first.input_size, first.patch_size) or \
                abs((card.patch_mpp or 0) - (first.patch_mpp or 0)) > 1e-3 * (first.patch_mpp or 1):
            raise InputError("the models of an ensemble must read the same patches: "
                             f"{first.patch_size} px at {first.patch_mpp} µm/px into {first.input_size} px, "
                             f"against {card.patch_size} px at {card.patch_mpp} µm/px into {card.input_size} px")
        if card.stain_norm:
            raise InputError("a model with Reinhard stain normalisation cannot join an ensemble "
                             "(the normalisation runs outside the network)")
    size = first.input_size
    inputs = keras.Input((size, size, 3), name="rgb")
    density = None
    outputs = []
    for i, (model, card) in enumerate(members):
        # A nested model's name must be unique in the graph; its weights stay as they are.
        member = keras.Model(model.inputs[0], model.outputs[0], name=f"member{i}")
        if card.input_space == "hed":
            density = density if density is not None else OpticalDensity(name="optical_density")(inputs)
            outputs.append(member(density))
        else:
            outputs.append(member(inputs))
    return keras.Model(inputs, MeanLogit(name="mean_logit")(outputs), name=name)


def save_ensemble(models: Sequence[str], validation, output) -> ModelCard:
    """Join trained models into one ensemble file, its thresholds measured on labelled patches.

    Parameters
    ----------
    models : sequence of str
        Two or more ``.keras`` files or bundled models' names.
    validation : PatchTable
        Tumor and normal patches from slides the members did not train on:
        the detection threshold (Youden's J) and the screening threshold
        come from the ensemble's scores on them, one pass a patch, as
        ``predict`` scores a slide.
    output : path-like
        The ``.keras`` file to write (atomically), with its card inside.

    Returns
    -------
    ModelCard
        The ensemble's card: ``backbone`` ``ensemble``, the members' names,
        validation metrics and each member's own on the same patches.
    """
    from dataclasses import replace
    from pathlib import Path

    import numpy as np

    from .data import make_dataset
    from .io import load_model, save_model
    from .metrics import best_threshold, binary_metrics, normal_score_quantiles, screening_threshold
    from .predict import checked_probabilities

    output = Path(output)
    if output.suffix != ".keras":
        raise InputError(f"{output}: a model file must end in .keras")
    if len(np.unique(validation.labels)) < 2:
        raise InputError("the validation patches need both tumor and normal ones, to set the threshold")
    members = [load_model(name) for name in models]
    model = build_ensemble(members)
    first = members[0][1]
    card = ModelCard(backbone=ENSEMBLE_BACKBONE, weights="none", input_size=first.input_size,
                     patch_size=first.patch_size, patch_mpp=first.patch_mpp, classes=first.classes,
                     input_space="rgb", threshold=0.5)

    def scores(net, net_card: ModelCard) -> np.ndarray:
        batches = make_dataset(validation, net_card, batch_size=128, training=False)
        return checked_probabilities(net.predict(batches, verbose=0))

    joint = scores(model, card)
    threshold = best_threshold(validation.labels, joint)
    own = [binary_metrics(validation.labels, scores(m, c), c.threshold) for m, c in members]
    card = replace(
        card, threshold=threshold,
        validation={**binary_metrics(validation.labels, joint, threshold),
                    **screening_threshold(validation.labels, joint),
                    **normal_score_quantiles(validation.labels, joint)},
        training={"members": [{"model": Path(name).name, "backbone": c.backbone, "input_space": c.input_space,
                               "threshold": c.threshold, "validation": metrics}
                              for name, (_, c), metrics in zip(models, members, own)],
                  "validation": validation.summary(), "rule": "sigmoid of the mean logit"})
    save_model(model, output, card)
    return card
