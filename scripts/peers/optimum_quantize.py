"""Runs in Optimum's own environment (optimum-onnx pins transformers < 4.58; scripts/bench_peers_encoder.py makes
it): export a fine-tuned classifier with Optimum's exporter, then quantize it with ORTQuantizer as Optimum's
documentation does, with `AutoQuantizationConfig.<isa>` defaults: dynamic, and static calibrated (min-max) on the
examples given as an .npz of int64 arrays.

    python optimum_quantize.py CHECKPOINT CALIBRATION.npz OUT_DIR {avx2,avx512,avx512_vnni}

Writes OUT_DIR/fp32/model.onnx, OUT_DIR/dynamic/model_quantized.onnx, OUT_DIR/static/model_quantized.onnx and
OUT_DIR/versions.json.
"""
import json
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
from datasets import Dataset
from optimum.exporters.onnx import main_export
from optimum.onnxruntime import ORTQuantizer
from optimum.onnxruntime.configuration import AutoCalibrationConfig, AutoQuantizationConfig

checkpoint, calibration, out, isa = sys.argv[1:5]
out = Path(out)
main_export(checkpoint, output=out / "fp32", task="text-classification")
with np.load(calibration, allow_pickle=False) as arrays:
    dataset = Dataset.from_dict({k: arrays[k].tolist() for k in arrays.files})
for mode in ("dynamic", "static"):
    quantizer = ORTQuantizer.from_pretrained(out / "fp32")
    config = getattr(AutoQuantizationConfig, isa)(is_static=mode == "static")
    ranges = quantizer.fit(dataset=dataset, calibration_config=AutoCalibrationConfig.minmax(dataset),
                           operators_to_quantize=config.operators_to_quantize,
                           onnx_augmented_model_name=out / "augmented.onnx") if mode == "static" else None
    quantizer.quantize(save_dir=out / mode, quantization_config=config, calibration_tensors_range=ranges)
    print(f"optimum {mode}: {config}", flush=True)
(out / "versions.json").write_text(json.dumps({p: version(p) for p in ("optimum", "optimum-onnx", "transformers",
                                                                      "onnxruntime")}))
