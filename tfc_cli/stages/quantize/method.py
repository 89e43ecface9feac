"""What every quantization method shares: the recipe's `type: quantize` with a `method:` that picks the class."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...schema import param
from ..base import Stage

METHOD_HELP = ("quantization scheme: dynamic-int8, static-int8, qat-int8 (text-classification), weight-only "
               "(causal-lm)")
BACKEND_HELP = "runtime that executes the quantized model"


@dataclass(frozen=True)
class MethodConfig:
    """Fields every method has; each method's config narrows their types (and keeps them first in `tfc stages`)."""
    method: str = param("", help=METHOD_HELP)
    backend: str = param("onnxruntime", help=BACKEND_HELP)


class QuantizeMethod(Stage):
    type = "quantize"
    method: ClassVar[str]

    def described(self) -> str:
        return f"method '{self.method}'"

    def configured_as(self) -> str:
        return f"method '{self.method}' on backend '{self.config.backend}'"

    def validate(self, info, task: str) -> list[str]:
        return ["the model is already quantized"] if info.quantized else []
