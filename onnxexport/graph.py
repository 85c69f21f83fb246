"""Move the harmonic source's random draws between graph inputs and in-graph random nodes.

The traced synthesizer takes ``sine_phase`` ``[1, 9]`` and ``sine_noise`` ``[1, T·hop, 9]`` as
inputs (:mod:`onnxexport.synthesizer`). MoeVoiceStudio / DragonianLib feed exactly 4.1's inputs,
so :func:`randomize_source_inputs` replaces the two inputs by nodes that draw them inside the graph:

- ``sine_phase`` = ``RandomUniform(shape=[1, 9])`` (U[0, 1), as ``torch.rand``);
- ``sine_noise`` = ``RandomNormalLike(ConstantOfShape([1, T·hop, 9]))`` with ``T`` read from the
  shape of ``f0`` (N(0, 1), as ``torch.randn_like``).

Every other node is left as it is. :func:`restore_source_inputs` undoes it (the nodes carry the
name prefix ``sovits_source/``), so a file written for MoeVoiceStudio can be run by our backend with
seeded source noise, and tested against ``SynthesizerTrn.infer`` as shipped.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

PREFIX = "sovits_source/"
HARMONICS = 9
SOURCE_INPUTS = ("sine_phase", "sine_noise")


def _source_nodes(hop: int) -> list[onnx.NodeProto]:
    def const(name, values):
        return helper.make_node(
            "Constant", [], [PREFIX + name], name=PREFIX + name,
            value=helper.make_tensor(PREFIX + name, TensorProto.INT64, [len(values)], values),
        )  # fmt: skip

    p = PREFIX
    return [
        helper.make_node(
            "RandomUniform",
            [],
            ["sine_phase"],
            name=p + "phase",
            shape=[1, HARMONICS],
            dtype=TensorProto.FLOAT,
            low=0.0,
            high=1.0,
        ),  # fmt: skip
        const("one", [1]),
        const("hop", [hop]),
        const("harmonics", [HARMONICS]),
        helper.make_node("Shape", ["f0"], [p + "f0_shape"], name=p + "f0_shape"),
        helper.make_node(
            "Gather", [p + "f0_shape", p + "one"], [p + "frames"], name=p + "frames", axis=0
        ),  # fmt: skip
        helper.make_node("Mul", [p + "frames", p + "hop"], [p + "samples"], name=p + "samples"),
        helper.make_node(
            "Concat",
            [p + "one", p + "samples", p + "harmonics"],
            [p + "shape"],
            name=p + "shape",
            axis=0,
        ),  # fmt: skip
        helper.make_node(
            "ConstantOfShape",
            [p + "shape"],
            [p + "zeros"],
            name=p + "zeros",
            value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]),
        ),  # fmt: skip
        helper.make_node(
            "RandomNormalLike",
            [p + "zeros"],
            ["sine_noise"],
            name=p + "noise",
            dtype=TensorProto.FLOAT,
            mean=0.0,
            scale=1.0,
        ),  # fmt: skip
    ]


def has_source_inputs(model: onnx.ModelProto) -> bool:
    names = {i.name for i in model.graph.input}
    return all(n in names for n in SOURCE_INPUTS)


def randomize_source_inputs(model: onnx.ModelProto, hop: int) -> onnx.ModelProto:
    """A copy of ``model`` whose ``sine_phase`` / ``sine_noise`` are drawn inside the graph."""
    if not has_source_inputs(model):
        raise ValueError("the model has no sine_phase / sine_noise inputs")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    kept = [i for i in out.graph.input if i.name not in SOURCE_INPUTS]
    del out.graph.input[:]
    out.graph.input.extend(kept)
    nodes = list(out.graph.node)
    del out.graph.node[:]
    out.graph.node.extend(_source_nodes(hop) + nodes)
    return out


def restore_source_inputs(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """Undo :func:`randomize_source_inputs`; ``None`` if ``model`` was not made by it."""
    if has_source_inputs(model):
        return model
    if not any(n.name.startswith(PREFIX) for n in model.graph.node):
        return None
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = [n for n in out.graph.node if not n.name.startswith(PREFIX)]
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.input.extend([
        helper.make_tensor_value_info("sine_phase", TensorProto.FLOAT, [1, HARMONICS]),
        helper.make_tensor_value_info("sine_noise", TensorProto.FLOAT,
                                      [1, "sine_noise_dynamic_axes_1", HARMONICS]),
    ])  # fmt: skip
    return out
