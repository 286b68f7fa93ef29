"""Rewrites of tf2onnx's graphs that ONNX Runtime runs faster, each checked against Keras by the export.

tf2onnx spells a Keras ``LayerNormalization`` over a patch's height and width
out in eleven whole-patch elementwise ops; ONNX Runtime's own
LayerNormalization kernel does the same in one pass.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

__all__ = ["fuse_patch_standardisation"]


# What tf2onnx writes for one ``LayerNormalization(axis=[1, 2], center=False, scale=False)``: the mean,
# the variance of the differences, ε, a reciprocal square root, and x·r − mean·r.
_STANDARDISATION_OPS = Counter({"ReduceMean": 2, "Neg": 1, "Sub": 1, "Mul": 3, "Add": 2, "Sqrt": 1,
                                "Reciprocal": 1})


def fuse_patch_standardisation(proto) -> bool:
    """Replace each per-patch standardisation tf2onnx spells out in eleven elementwise ops by one
    ``LayerNormalization`` over (H, W) in channels-first order, in place; True when it fused any.

    Our from-scratch networks begin by standardising each patch and channel
    (``LayerNormalization(axis=[1, 2])`` in Keras), and an ensemble has one
    such start a member (the second after its optical densities). tf2onnx
    writes each as means, differences, square roots and products over the
    whole input, then turns it channels-first for the first convolution: a
    quarter of ONNX Runtime's time on one network. Its own
    LayerNormalization kernel does it in one pass (measured: 1.3 times the
    patches per second). The fused graph must still match Keras within
    :data:`TOLERANCE` (:func:`export_onnx` checks it, and keeps the plain one
    otherwise).
    """
    sizes = _heights_widths(proto)
    fused = 0
    while _fuse_one_standardisation(proto.graph, sizes, f"standardise{fused}"):
        fused += 1
    return bool(fused)


def _heights_widths(proto) -> dict[str, tuple[int, int]]:
    """The static (H, W) of each 4-d tensor of the graph whose shape ONNX's inference can tell."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(proto).graph
    except Exception:  # an op the inference does not know: only the input's size is known
        inferred = proto.graph
    sizes = {}
    for info in list(inferred.input) + list(inferred.value_info):
        dims = info.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].dim_value and dims[2].dim_value:
            sizes[info.name] = (dims[1].dim_value, dims[2].dim_value)
    return sizes


def _fuse_one_standardisation(graph, sizes: dict[str, tuple[int, int]], name: str) -> bool:
    from onnx import helper, numpy_helper

    nodes = list(graph.node)
    constants = {init.name: init for init in graph.initializer}
    readers: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        for tensor in node.input:
            readers.setdefault(tensor, []).append(i)
    for i, first in enumerate(nodes):
        attributes = {a.name: helper.get_attribute_value(a) for a in first.attribute}
        if first.op_type != "ReduceMean" or len(first.input) != 1 or list(attributes.get("axes", ())) != [1, 2]:
            continue
        source = first.input[0]
        # The nodes computed from this mean and the source alone (and constants), by moments ops.
        group, produced = {i}, set(first.output)
        grew = True
        while grew:
            grew = False
            for j in sorted({r for t in produced for r in readers.get(t, ())} - group):
                node = nodes[j]
                if node.op_type in _STANDARDISATION_OPS \
                        and all(t in produced or t == source or t in constants for t in node.input):
                    group.add(j)
                    produced.update(node.output)
                    grew = True
        if Counter(nodes[j].op_type for j in group) != _STANDARDISATION_OPS:
            continue
        outside = {r for j in group for t in nodes[j].output for r in readers.get(t, ())} - group
        if len(outside) != 1:
            continue
        transpose = nodes[outside.pop()]
        perm = [helper.get_attribute_value(a) for a in transpose.attribute if a.name == "perm"]
        if transpose.op_type != "Transpose" or perm != [[0, 3, 1, 2]]:
            continue
        epsilons = [t for j in group if nodes[j].op_type == "Add" for t in nodes[j].input if t in constants]
        if len(epsilons) != 1 or numpy_helper.to_array(constants[epsilons[0]]).size != 1:
            continue
        # Where inference cannot tell (an ensemble's optical densities, reshaped by a computed shape), the
        # patches' size: everything before a member's first convolution is per pixel. A wrong guess makes
        # a graph ONNX Runtime refuses or that differs from Keras, and export_onnx keeps the plain one.
        shape = sizes.get(source, sizes.get(graph.input[0].name))
        if shape is None:
            continue
        epsilon = float(numpy_helper.to_array(constants[epsilons[0]]).ravel()[0])
        graph.initializer.extend([numpy_helper.from_array(np.ones(shape, np.float32), f"{name}_scale"),
                                  numpy_helper.from_array(np.zeros(shape, np.float32), f"{name}_bias")])
        replacement = [helper.make_node("Transpose", [source], [f"{name}_channels_first"], perm=[0, 3, 1, 2]),
                       helper.make_node("LayerNormalization", [f"{name}_channels_first", f"{name}_scale",
                                                               f"{name}_bias"], [transpose.output[0]], axis=2,
                                        epsilon=epsilon)]
        gone = group | {nodes.index(transpose)}
        kept = [node for j, node in enumerate(nodes) if j not in gone]
        at = sum(1 for j in range(i) if j not in gone)  # where the mean was: after whatever makes the source
        del graph.node[:]
        graph.node.extend(kept[:at] + replacement + kept[at:])
        if not any(epsilons[0] in node.input for node in graph.node):  # an ensemble's other member may share it
            graph.initializer.remove(constants[epsilons[0]])
        return True
    return False
