"""Silence libraries that log advice tfc has already acted on (exporter registrations, ORT pre-processing tips)."""
from __future__ import annotations

import contextlib
import io
import logging
import warnings


@contextlib.contextmanager
def library_noise_silenced():
    root, onnx_log = logging.getLogger(), logging.getLogger("torch.onnx")
    levels = root.level, onnx_log.level
    root.setLevel(logging.ERROR)
    onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(levels[0])
        onnx_log.setLevel(levels[1])
