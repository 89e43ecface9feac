"""The stage registry: recipe `type:` -> stage class. Explicit, so a grep finds every stage."""
from __future__ import annotations

from .base import Stage
from .cofi import Cofi
from .distill import Distill
from .finetune import Finetune
from .prune import Prune
from .quantize import Quantize
from .sparsify import Sparsify

STAGES: dict[str, type[Stage]] = {cls.type: cls for cls in (Finetune, Distill, Prune, Cofi, Sparsify, Quantize)}
