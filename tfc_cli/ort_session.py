"""ONNX Runtime sessions as tfc times and runs them."""
from __future__ import annotations


# protobuf cannot serialize a message past 2 GiB: a larger graph (an fp32 0.5B LM) goes to ORT as a file
PROTOBUF_LIMIT = 2**31 - 1


def weight_bytes(model) -> int:
    return sum(len(t.raw_data) for t in model.graph.initializer)


def ort_session(onnx_model, threads: int | None = None, spin_within_run: bool = False):
    """A CPU session of `onnx_model` (bytes, a path, or an onnx.ModelProto of any size).

    `spin_within_run`: worker threads busy-wait between the operators of one run and stop when it ends. For
    graphs of many small operators (one decode step of an LM); see lm/runners.py for what it gives."""
    import onnxruntime as ort

    if not isinstance(onnx_model, (bytes, str)):
        if weight_bytes(onnx_model) < PROTOBUF_LIMIT - (64 << 20):
            onnx_model = onnx_model.SerializeToString()
        else:
            return _session_from_large_proto(onnx_model, threads, spin_within_run)

    options = ort.SessionOptions()
    # ORT's threads busy-wait after each run by default; in an interleaved benchmark that steals the cores
    # from the next model (measured: torch fp32 ran 2.5x slower right after a spinning ORT call).
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin_within_run else "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if spin_within_run:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])


def _session_from_large_proto(model, threads: int | None, spin_within_run: bool):
    """Written to a temporary folder with its weights beside it (ORT has read them when the session exists)."""
    import tempfile

    import onnx
    from onnx.external_data_helper import load_external_data_for_model

    with tempfile.TemporaryDirectory(prefix="tfc-large-graph-") as tmp:
        # saving moves the weights out of `model` into the file; they are read back after, instead of saving a copy
        # (another 2.5 GB for an fp32 0.5B LM)
        onnx.save_model(model, f"{tmp}/model.onnx", save_as_external_data=True, location="weights.bin")
        session = ort_session(f"{tmp}/model.onnx", threads, spin_within_run)
        load_external_data_for_model(model, tmp)
        return session
