"""Weight-only quantization of a decoder ONNX graph: int4 or int8 weights in groups, float activations.

Why ONNX Runtime's MatMulNBits, chosen by measurement on this CPU (torch 2.13, ORT 1.32, 2 threads, batch 1,
one 576x1536 SmolLM2 matmul, medians): fp32 55 us; MatMulNBits int4 32 us and int8 33 us with integer compute
(accuracy_level 4), 58 us / 626 us with float compute. The torch alternatives were slower than fp32:
`_weight_int8pack_mm` 500 us, `_weight_int4pack_mm_for_cpu` 800 us, dequantize-then-matmul 205-3580 us; torchao
0.18's int4 weight-only does not run on CPU at all. The 49152x576 LM head: fp32 3.3 ms, int4 0.39 ms.

- Linear weights (every MatMul with a constant weight, the LM head included): MatMulNBits, `bits`, one scale per
  `group_size` weights along the input dimension. `algorithm: rtn` rounds to the nearest level of a symmetric
  grid (integer kernels; fastest). `algorithm: hqq` (int4) fits a scale and a float zero point per group by
  half-quadratic optimisation (HQQ): more accurate, but ORT runs float zero points in a slow kernel (measured on
  SmolLM2-135M, Hamlet: perplexity +8.6% vs +38% for RTN, decode 6.5x slower than fp32 vs 2.1x faster).
  `algorithm: gptq | awq` round the attention and FFN Linears in torch on calibration text (quant/calibrated.py) to
  codes with integer zero points, the fast kernel's layout; they go into the graph as computed (quant/nbits_graph.py).
  The LM head too, untied from the embeddings, whose table is rounded to nearest as for rtn.
- Group size at int8 (measured 2026-12-05, AMD EPYC AVX-512 VNNI, 2 threads): groups of 128 decode SmolLM2-135M
  1.13-1.17x and Qwen2.5-0.5B 1.17x faster than groups of 32, and lose more perplexity (+1.3% vs +0.6% on SmolLM2):
  the integer kernel rounds the activation too, in blocks of the group size, and that is most of the loss
  (simulated: weights alone in 128s +0.37%, with the activation +1.44%; scripts/explore_int8_groups.py).
  `algorithm: awq` takes it back: its scales move activation outliers into the weights (SmolLM2-135M: +0.08% in
  128s; awq.py).
- Token embeddings (Gather): where the LM head is the embedding table (tied, as in SmolLM2-135M), the table is
  stored once, as the head's MatMulNBits weight, which the embeddings read through GatherBlockQuantized
  (share_tied_table; SmolLM2-135M int8 awq: 181 -> 154 MB at the same perplexity, int4 gptq: 105 -> 91 MB for
  +0.3 points). Otherwise int4 in groups (GatherBlockQuantized) for bits 4; ORT's quantizer does Gather at 4
  bits only, so for bits 8 tfc stores the table int8 with one scale per row and dequantizes the gathered rows.
- A tied LM head reads the embedding transposed (a Transpose, or after ORT's fusions a FusedMatMul with transB);
  that is folded into a transposed constant first, or the head (a fifth of SmolLM2's weights) would stay fp32.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..quiet import library_noise_silenced
from .nbits_graph import apply_codes, pack, unpack


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _transposed_weight(node, producer: dict, inits: dict) -> str | None:
    """The constant W when `node` computes x @ W^T: MatMul(x, Transpose(W)), or ORT's FusedMatMul(x, W, transB=1)
    (what ORT's fusions make of the former)."""
    if node.op_type == "MatMul":
        source = producer.get(node.input[1])
        if source is not None and source.op_type == "Transpose" and source.input[0] in inits \
                and _attrs(source).get("perm", [1, 0]) == [1, 0]:
            return source.input[0]
    if node.op_type == "FusedMatMul" and node.input[1] in inits:
        attrs = _attrs(node)
        plain = not attrs.get("transA") and not attrs.get("transBatchA") and not attrs.get("transBatchB")
        if attrs.get("transB") == 1 and plain and attrs.get("alpha", 1.0) == 1.0:
            return node.input[1]
    return None


def fold_weight_transposes(model: onnx.ModelProto) -> int:
    """x @ W^T with W a constant (a tied LM head reading the embedding table) -> MatMul(x, W^T stored as a new
    constant), which the weight quantizer can take. Returns how many were folded."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    folded = 0
    for node in graph.node:
        source = _transposed_weight(node, producer, inits)
        if source is None or len(inits[source].dims) != 2:
            continue
        name = f"{source}_transposed"
        if name not in inits:
            weight = numpy_helper.to_array(inits[source])
            inits[name] = numpy_helper.from_array(np.ascontiguousarray(weight.T), name)
            graph.initializer.append(inits[name])
        node.op_type, node.domain, node.input[1] = "MatMul", "", name
        del node.attribute[:]
        folded += 1
    used = {i for n in graph.node for i in n.input}
    keep = [n for n in graph.node if n.op_type != "Transpose" or any(o in used for o in n.output)]
    del graph.node[:]
    graph.node.extend(keep)
    return folded


def int8_embeddings(model: onnx.ModelProto) -> list[str]:
    """Gather(table, ids) with a constant fp32 2-D table -> int8 rows with one scale per row, dequantized after the
    gather. Returns the tables converted."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    converted, nodes = [], []
    for node in graph.node:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        table = inits.get(node.input[0]) if node.op_type == "Gather" else None
        if table is None or axis != 0 or len(table.dims) != 2 or table.data_type != onnx.TensorProto.FLOAT:
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(table)
        scale = np.maximum(np.abs(weight).max(axis=1, keepdims=True), 1e-12) / 127.0
        q = np.clip(np.round(weight / scale), -127, 127).astype(np.int8)
        base = node.input[0]
        graph.initializer.extend([numpy_helper.from_array(q, f"{base}_int8"),
                                  numpy_helper.from_array(scale.astype(np.float32), f"{base}_row_scale")])
        out, ids = node.output[0], node.input[1]
        nodes += [helper.make_node("Gather", [f"{base}_int8", ids], [f"{out}_int8"], name=f"{node.name}_int8", axis=0),
                  helper.make_node("Cast", [f"{out}_int8"], [f"{out}_float"], name=f"{node.name}_cast",
                                   to=onnx.TensorProto.FLOAT),
                  helper.make_node("Gather", [f"{base}_row_scale", ids], [f"{out}_scale"], name=f"{node.name}_scale", axis=0),
                  helper.make_node("Mul", [f"{out}_float", f"{out}_scale"], [out], name=f"{node.name}_dequantize")]
        converted.append(base)
    del graph.node[:]
    graph.node.extend(nodes)
    return converted


def _head_weights(head: onnx.NodeProto, inits: dict, rows: np.ndarray) -> np.ndarray:
    """Rows (output features) of a MatMulNBits weight, dequantized: (len(rows), K)."""
    attrs = _attrs(head)
    n, k, bits, block = attrs["N"], attrs["K"], attrs["bits"], attrs["block_size"]
    blocks = -(-k // block)
    codes = unpack(numpy_helper.to_array(inits[head.input[1]])[rows], bits, block).astype(np.float32)
    scales = numpy_helper.to_array(inits[head.input[2]]).reshape(n, blocks)[rows]
    zero_input = head.input[3] if len(head.input) > 3 else ""
    zeros = (unpack(numpy_helper.to_array(inits[zero_input]).reshape(n, -1), bits, blocks)[rows] if zero_input
             else np.full((len(rows), blocks), 2 ** (bits - 1)))
    return ((codes - zeros[..., None]) * scales[..., None]).reshape(len(rows), -1)[:, :k]


def share_tied_table(model: onnx.ModelProto, input_scale: np.ndarray | None = None) -> str | None:
    """A tied LM head and token embedding stored once: the embeddings' Gather(table, ids) becomes a
    GatherBlockQuantized over the head's MatMulNBits weight itself (ORT reads uint8 data in MatMulNBits' layout), its
    rows cut to the hidden size and, where AWQ scaled the head's input into the final norm (`input_scale`), divided by
    that scale. Returns the table's name, or None (nothing changed) when no Gather reads a constant table that a
    head with integer zero points holds: the head's shape, and a sample of its rows near the table's."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    heads = {(_attrs(n)["N"], _attrs(n)["K"]): n for n in graph.node if n.op_type == "MatMulNBits"}
    for index, gather in enumerate(graph.node):
        table = inits.get(gather.input[0]) if gather.op_type == "Gather" else None
        if table is None or len(table.dims) != 2 or _attrs(gather).get("axis", 0) != 0:
            continue
        head = heads.get(tuple(table.dims))
        zero_input = head.input[3] if head is not None and len(head.input) > 3 else ""
        if head is None or (zero_input and inits[zero_input].data_type != onnx.TensorProto.UINT8):
            continue  # no head of this shape, or float zero points (HQQ), which GatherBlockQuantized cannot read
        vocab, hidden = table.dims
        rows = np.random.default_rng(0).choice(vocab, min(vocab, 1024), replace=False)
        expected = numpy_helper.to_array(table)[rows] * (input_scale if input_scale is not None else 1)
        error = np.sqrt(np.mean((_head_weights(head, inits, rows) - expected) ** 2) / np.mean(expected ** 2))
        if error > 0.6:  # not this table quantized (rounding to 4 bits in groups of 128 is ~0.3, a random matrix ~1.4)
            continue
        attrs = _attrs(head)
        bits, block, blocks = attrs["bits"], attrs["block_size"], -(-hidden // attrs["block_size"])
        base, out = table.name, gather.output[0]
        scales = numpy_helper.to_array(inits[head.input[2]]).reshape(vocab, blocks, 1)
        tensors = [numpy_helper.from_array(scales, f"{base}_shared_scales"),
                   numpy_helper.from_array(np.array([-1], np.int64), f"{base}_row")]
        if zero_input:
            zeros = unpack(numpy_helper.to_array(inits[zero_input]).reshape(vocab, -1), bits, blocks)
            tensors.append(numpy_helper.from_array(pack(zeros.reshape(vocab, blocks, 1), bits), f"{base}_shared_zeros"))
        nodes = [helper.make_node("GatherBlockQuantized", [head.input[1], gather.input[1], tensors[0].name]
                                  + ([tensors[2].name] if zero_input else []), [f"{out}_blocks"],
                                  name=f"{gather.name}_shared", domain="com.microsoft", gather_axis=0, quantize_axis=2,
                                  block_size=block, bits=bits),
                 # the gathered (..., blocks, block) rows as (..., blocks * block), for ids of any rank
                 helper.make_node("Shape", [gather.input[1]], [f"{out}_ids_shape"], name=f"{gather.name}_ids_shape"),
                 helper.make_node("Concat", [f"{out}_ids_shape", tensors[1].name], [f"{out}_rows_shape"],
                                  name=f"{gather.name}_rows_shape", axis=0),
                 helper.make_node("Reshape", [f"{out}_blocks", f"{out}_rows_shape"], [f"{out}_padded"],
                                  name=f"{gather.name}_rows")]
        if blocks * block != hidden:  # the head's rows are padded to whole blocks
            cut = [numpy_helper.from_array(np.array([v], np.int64), f"{base}_cut_{n}")
                   for n, v in (("start", 0), ("end", hidden), ("axis", -1))]
            tensors += cut
            nodes.append(helper.make_node("Slice", [f"{out}_padded"] + [t.name for t in cut], [f"{out}_cut"],
                                          name=f"{gather.name}_cut"))
        if input_scale is not None:
            tensors.append(numpy_helper.from_array((1 / input_scale).astype(np.float32), f"{base}_unscale"))
            nodes.append(helper.make_node("Mul", [nodes[-1].output[0], f"{base}_unscale"], [f"{out}_unscaled"],
                                          name=f"{gather.name}_unscale"))
        nodes[-1].output[0] = out
        graph.initializer.extend(tensors)
        del graph.node[index]
        for offset, node in enumerate(nodes):
            graph.node.insert(index + offset, node)
        return base
    return None


def drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def _quantize(model: onnx.ModelProto, config) -> onnx.ModelProto:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    with library_noise_silenced():
        quantizer = MatMulNBitsQuantizer(model, algo_config=config)
        quantizer.process()
    return quantizer.model.model


def _rtn_config(ops: tuple[str, ...], bits: int, group_size: int, integer_compute: bool):
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig

    return DefaultWeightOnlyQuantConfig(
        block_size=group_size, is_symmetric=True, accuracy_level=4 if integer_compute else None, bits=bits,
        op_types_to_quantize=ops, quant_axes=tuple((op, 0 if op == "MatMul" else 1) for op in ops))


def _linear_config(bits: int, group_size: int, algorithm: str, integer_compute: bool):
    from onnxruntime.quantization.matmul_nbits_quantizer import HQQWeightOnlyQuantConfig

    if algorithm == "hqq":
        return HQQWeightOnlyQuantConfig(block_size=group_size, bits=bits, op_types_to_quantize=("MatMul",),
                                        quant_axes=(("MatMul", 0),))
    return _rtn_config(("MatMul",), bits, group_size, integer_compute)


def weight_only_quantize(onnx_model, bits: int, group_size: int, algorithm: str = "rtn",
                         integer_compute: bool = True, codes: list | None = None,
                         tied_head: bool = False) -> tuple[bytes, dict]:
    """The quantized graph (bytes) of `onnx_model` (bytes or an onnx.ModelProto, which is changed) and a record of
    what was done. `codes`: the Linears' codes from GPTQ or AWQ
    (quant/calibrated.py), put in as they are; the weights they do not cover are rounded to nearest. `tied_head`:
    the model's LM head is its embedding table (before calibration untied it), stored once (share_tied_table)."""
    if algorithm == "hqq" and bits != 4:
        raise ValueError("hqq quantizes to 4 bits only")
    result = onnx.load_from_string(onnx_model) if isinstance(onnx_model, bytes) else onnx_model
    folded = fold_weight_transposes(result)
    calibrated = apply_codes(result, codes, 4 if integer_compute else None) if codes else 0
    result = _quantize(result, _linear_config(bits, group_size, algorithm, integer_compute))
    head_scale = next((c.input_scale.numpy() for c in codes or [] if c.input_scale is not None), None)
    shared = share_tied_table(result, head_scale) if tied_head else None
    embeddings = []
    if bits == 8:
        embeddings = int8_embeddings(result)
    elif any(n.op_type == "Gather" for n in result.graph.node):  # int4 tables by ORT's RTN (HQQ has no Gather)
        result = _quantize(result, _rtn_config(("Gather",), bits, group_size, integer_compute))
    drop_unused_initializers(result)
    ops_after = [n.op_type for n in result.graph.node]
    record = {"algorithm": algorithm, "linear": ops_after.count("MatMulNBits"),
              **({"linear_from_calibrated_codes": calibrated} if codes else {}), "float_matmuls_left": ops_after.count("MatMul"),
              "embeddings": (f"the LM head's int{bits} weights, shared" if shared else
                             "int4 groups" if "GatherBlockQuantized" in ops_after else
                             ("int8 per row" if embeddings else "fp32")), "folded_transposes": folded}
    return result.SerializeToString(), record
