"""What every stage is: a frozen config dataclass plus `validate` (before weights load) and `apply`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ..model_info import ModelInfo
    from ..model_state import ModelState
    from ..data import TaskData


# What a model is between stages: recipe validation folds these through the stage list.
REPRESENTATIONS = {"torch": "a float torch model", "torch-int8": "a torch model with tfc's INT8 layers",
                   "onnx": "an ONNX Runtime graph"}


@dataclass
class StageContext:
    recipe: Any  # recipe.Recipe (recipe.py imports the stages, so not the other way)
    data: "TaskData"
    seed: int


@dataclass
class StageResult:
    state: "ModelState"
    summary: dict[str, Any] = field(default_factory=dict)  # what the report shows for this stage
    transforms: list[dict] = field(default_factory=list)  # what the stage did to the model (transforms.py), in order


class Stage:
    type: ClassVar[str]
    Config: ClassVar[type]
    help: ClassVar[str]
    compresses: ClassVar[bool] = True  # the baseline is taken before the first compressing stage
    prunes_structure: ClassVar[bool] = False  # needs an unpruned model and leaves a pruned one
    gives_head: ClassVar[bool] = False  # gives the model a trained task head
    tasks: ClassVar[tuple[str, ...]] = ("text-classification",)  # task types the stage applies to
    # A stage type with one class per variant (quantize: one per `method:`): the recipe's `variant_key` picks it.
    variant_key: ClassVar[str] = ""
    variants: ClassVar[dict[str, type["Stage"]]] = {}
    default_variant: ClassVar[str] = ""

    def __init__(self, config):
        self.config = config

    def described(self) -> str:
        """How messages name this stage."""
        return f"stage '{self.type}'"

    def configured_as(self) -> str:
        """How messages name this stage's configuration (an option that does not apply 'does not apply to' it)."""
        return "this stage"

    def validate(self, info: "ModelInfo", task: str) -> list[str]:
        """Problems with applying this stage to the model described by `info` (config only, no weights)."""
        return []

    def accepts(self) -> tuple[str, ...]:
        """The model representations the stage can take (see REPRESENTATIONS); by default a float torch model."""
        return ("torch",)

    def produces(self, representation: str) -> str:
        """The representation the stage leaves, given the one it takes; by default the same."""
        return representation

    def applied_options(self) -> tuple[str, ...]:
        """The config fields this stage, as configured, actually uses; by default all of them."""
        return tuple(f.name for f in dataclasses.fields(self.config))

    def record_config(self) -> dict:
        """The config as tfc.json and the report record it: only the options that applied."""
        applied = set(self.applied_options())
        return {k: v for k, v in dataclasses.asdict(self.config).items() if k in applied}

    def sparsity_target(self) -> float | None:
        """The share of the original model's prunable weights a pruning stage leaves removed, if it has one."""
        return getattr(self.config, "target_sparsity", None)

    def input_paths(self) -> list[str]:
        """Models or files the stage reads besides the recipe's model and data (e.g. a teacher)."""
        return []

    def needs_train(self) -> bool:
        """True when the stage reads the training split (to train, or to calibrate)."""
        return False

    def selects_on_validation(self) -> bool:
        """True when the stage keeps the epoch (or variant) that scores best on the validation split."""
        return False

    def plan(self, info: "ModelInfo") -> str:
        """One or two sentences: what this stage will do to this model."""
        raise NotImplementedError

    def apply(self, state: "ModelState", ctx: StageContext) -> StageResult:
        raise NotImplementedError


def pruning_problems(info: "ModelInfo", target_sparsity: float | None) -> list[str]:
    """What stops a structured pruning of the model `info` describes: a family tfc does not describe, quantized
    weights, or a target that an earlier pruning already passed (targets count from the original model; None: the
    target is not a sparsity)."""
    from ..arch import BY_MODEL_TYPE, known_types

    problems = []
    if info.model_type not in BY_MODEL_TYPE:
        problems.append(f"model type '{info.model_type}' is not supported (known: {known_types()})")
    if info.quantized:
        problems.append("cannot prune a quantized model")
    sparsity = next((t.get("sparsity_of_original") for t in reversed(info.transforms) if t["op"] in ("prune", "layers")),
                    None)
    if sparsity is not None and target_sparsity is not None and sparsity >= target_sparsity:
        problems.append(f"the model is already pruned to sparsity {sparsity:.3f} of its original size; "
                        f"target_sparsity ({target_sparsity:g}) must be higher")
    return problems
