"""Silence libraries that log advice tfc has already acted on (exporter registrations, ORT pre-processing tips)."""
from __future__ import annotations

import contextlib
import io
import logging
import warnings


# torch.export reports every shape it specialises, transformers' exporter that it is experimental, NNCF its
# statistics passes and dataset sizes: not for users.
_LOGGERS = ("", "torch.onnx", "torch._export", "torch.export", "torch.fx.experimental.symbolic_shapes", "transformers",
            "nncf")


@contextlib.contextmanager
def library_noise_silenced():
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)
