"""A decoder graph whose KV cache lives in buffers that grow in place, for ONNX Runtime's GroupQueryAttention.

The exported decoder reads the past length from the shape of its past keys (Shape -> Add -> seqlens_k,
total_sequence_length, rotary positions), so each step must pass a past of exactly that length and receives a new,
one-longer present: every layer's keys and values are copied at every step, and ~120 arrays cross between Python
and ORT. GroupQueryAttention can instead write the new keys and values into the past buffer itself when the past
and present are the same memory (ORT's `past_present_share_buffer`, decided by comparing the two pointers). For
that the graph must take the past length as an input instead of reading it from a buffer that is now longer than
the sequence: `shared_kv_graph` makes that change and nothing else. The saved model.onnx keeps the standard
interface; this rewrite happens in memory when a runner loads it.
"""
from __future__ import annotations

import onnx
from onnx import TensorProto, helper

PAST_LENGTH = "past_sequence_length"


def shared_kv_graph(model: onnx.ModelProto, past_names: list[str], present_names: list[str]) -> onnx.ModelProto | None:
    """`model`, changed in place (no copy of an LM's weights), to take PAST_LENGTH (int64 [1]) instead of reading
    the past length from its past's shape; None, and `model` unchanged, when the graph is not one this applies to:
    every past input must feed only GroupQueryAttention nodes (and Shape nodes reading its length), and every
    present output must come straight from one."""
    graph = model.graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    producers = {out: node for node in graph.node for out in node.output}
    if not past_names or any(producers.get(n) is None or producers[n].op_type != "GroupQueryAttention"
                             for n in present_names):
        return None
    length_shapes = []
    for name in past_names:
        for node in consumers.get(name, []):
            if node.op_type == "Shape" and _shape_slice(node) == (2, 3):
                length_shapes.append(node)
            elif node.op_type != "GroupQueryAttention":
                return None
    if not length_shapes:
        return None
    lengths = {node.output[0] for node in length_shapes}
    kept = [node for node in graph.node if not (node.op_type == "Shape" and node.output[0] in lengths)]
    for node in kept:
        for i, name in enumerate(node.input):
            if name in lengths:
                node.input[i] = PAST_LENGTH
    del graph.node[:]
    graph.node.extend(kept)
    graph.input.append(helper.make_tensor_value_info(PAST_LENGTH, TensorProto.INT64, [1]))
    return model


def _shape_slice(node: onnx.NodeProto) -> tuple[int | None, int | None]:
    attrs = {a.name: a.i for a in node.attribute}
    return attrs.get("start"), attrs.get("end")
