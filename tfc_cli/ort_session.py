"""ONNX Runtime sessions as tfc times and runs them."""
from __future__ import annotations


def ort_session(onnx_model: bytes | str, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    # ORT's threads busy-wait after each run by default; in an interleaved benchmark that steals the cores
    # from the next model (measured: torch fp32 ran 2.5x slower right after a spinning ORT call).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])
