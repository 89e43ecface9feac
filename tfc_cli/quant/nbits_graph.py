"""Put codes computed in torch (GPTQ, AWQ) into an exported ONNX graph as MatMulNBits with integer zero points.

The exporter and ORT's fusions move weights around (q|k|v and gate|up become one MatMul each, weights are stored
transposed), so a graph weight is matched to the codes by content: every output column of a constant MatMul weight
is looked up by a digest of its float32 bytes among the rows of the dequantized Linears. The torch weights hold
exactly (code - zero) * scale, so a weight whose every column is found is replaced by the very codes it came from;
anything else (the LM head) is left for the round-to-nearest pass that follows.
"""
from __future__ import annotations

import hashlib

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .group_grid import GroupCodes


def _digest(row: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(row, dtype=np.float32).tobytes(), digest_size=16).digest()


def pack(values: np.ndarray, bits: int) -> np.ndarray:
    """uint8 values (..., n) packed along the last axis, low bits first (MatMulNBits' layout)."""
    if bits == 8:
        return values.astype(np.uint8)
    if values.shape[-1] % 2:
        values = np.concatenate([values, np.zeros(values.shape[:-1] + (1,), values.dtype)], axis=-1)
    return (values[..., 0::2] | (values[..., 1::2] << 4)).astype(np.uint8)


def unpack(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    """The inverse of pack: uint8 values (..., n) from MatMulNBits' packed layout."""
    if bits == 8:
        return packed[..., :n]
    values = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(packed.shape[:-1] + (-1,))
    return values[..., :n]


def matmul_nbits_node(node: onnx.NodeProto, weight: str, codes: np.ndarray, scales: np.ndarray, zeros: np.ndarray,
                      bits: int, group_size: int, accuracy_level: int | None) -> tuple[onnx.NodeProto, list]:
    """MatMulNBits replacing `node` (x @ W, W (K, N)); codes (N, K), scales and zeros (N, ceil(K / group_size)). K
    is padded to whole blocks with each block's zero point, i.e. with zero weights."""
    n, k = codes.shape
    blocks = -(-k // group_size)
    padding = np.repeat(zeros[:, -1:], blocks * group_size - k, axis=1).astype(codes.dtype)
    packed = pack(np.concatenate([codes, padding], axis=1).reshape(n, blocks, group_size), bits)
    tensors = [numpy_helper.from_array(packed, f"{weight}_q{bits}"),
               numpy_helper.from_array(scales.astype(np.float32).reshape(-1), f"{weight}_scales"),
               numpy_helper.from_array(pack(zeros, bits).reshape(-1), f"{weight}_zero_points")]
    attrs = {"K": k, "N": n, "bits": bits, "block_size": group_size}
    if accuracy_level is not None:
        attrs["accuracy_level"] = accuracy_level
    new = helper.make_node("MatMulNBits", [node.input[0]] + [t.name for t in tensors], list(node.output),
                           name=f"{node.name or weight}_q{bits}", domain="com.microsoft", **attrs)
    return new, tensors


def apply_codes(model: onnx.ModelProto, all_codes: list[GroupCodes], accuracy_level: int | None) -> int:
    """Replace every MatMul whose constant weight is made of the given codes' rows; returns how many."""
    if not all_codes:
        return 0
    bits, group_size = all_codes[0].bits, all_codes[0].group_size
    rows: dict[bytes, tuple[GroupCodes, int]] = {}
    for codes in all_codes:
        for j, row in enumerate(codes.dequantized().numpy()):
            rows[_digest(row)] = (codes, j)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    nodes, replaced = [], 0
    for node in graph.node:
        init = inits.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        if init is None or len(init.dims) != 2 or init.data_type != onnx.TensorProto.FLOAT:
            nodes.append(node)
            continue
        columns = numpy_helper.to_array(init).T  # (N, K): one output column per row
        found = [rows.get(_digest(column)) for column in columns]
        if any(f is None for f in found):
            nodes.append(node)
            continue
        codes = np.stack([c.codes[j].numpy() for c, j in found])
        scales = np.stack([c.scales[j].numpy() for c, j in found])
        zeros = np.stack([c.zeros[j].numpy() for c, j in found])
        new, tensors = matmul_nbits_node(node, node.input[1], codes, scales, zeros, bits, group_size, accuracy_level)
        graph.initializer.extend(tensors)
        nodes.append(new)
        replaced += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return replaced
