"""Teachers and students for distillation: the teacher (the model entering a stage, or a folder that reads the same
token ids and labels), and a student built from it (some of its layers, narrower sizes taken by weight magnitude)
or loaded from a folder or hub id."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

from .errors import TfcError
from .labels import head_labels
from .schema import param


@dataclass(frozen=True)
class StudentConfig:
    layers: Optional[list] = param(None, help="the teacher layers (0-based, increasing) the student keeps")
    num_layers: Optional[int] = param(None, help="keep this many teacher layers, evenly spaced, ending at the last",
                                      min=1)
    hidden_size: Optional[int] = param(None, help="narrower hidden size: the teacher's dims of largest weight "
                                       "magnitude", min=1)
    intermediate_size: Optional[int] = param(None, help="FFN units per layer: the teacher's of largest magnitude",
                                             min=1)
    num_attention_heads: Optional[int] = param(None, help="query heads per layer: the teacher's of largest magnitude "
                                               "(whole key/value groups)", min=1)
    model: Optional[str] = param(None, help="a student folder, hub id or demo:NAME instead (the teacher's tokenizer; "
                                 "a classifier's labels, or none to get a new head)")

    def sizes(self) -> dict:
        return {k: v for k, v in (("hidden_size", self.hidden_size), ("intermediate_size", self.intermediate_size),
                                  ("num_attention_heads", self.num_attention_heads)) if v is not None}

    def problems(self, info) -> list[str]:
        """What is wrong with this student for a teacher described by `info` (config only)."""
        derived = [k for k in ("layers", "num_layers") if getattr(self, k) is not None] + list(self.sizes())
        if self.model is not None:
            return [f"student.model is a whole student; remove student.{', student.'.join(derived)}"] if derived else []
        if not derived:
            return ["student: give layers, num_layers, hidden_size, intermediate_size, num_attention_heads or model"]
        problems = []
        if self.layers is not None and self.num_layers is not None:
            problems.append("student: give layers or num_layers, not both")
        if self.layers is not None:
            layers = self.layers
            if not layers or not all(isinstance(i, int) and not isinstance(i, bool) for i in layers) or \
                    sorted(set(layers)) != layers or not 0 <= layers[0] <= layers[-1] < info.num_layers:
                problems.append(f"student.layers must be increasing layer indices in 0..{info.num_layers - 1}")
        if self.num_layers is not None and self.num_layers > info.num_layers:
            problems.append(f"student.num_layers ({self.num_layers}) exceeds the teacher's {info.num_layers} layers")
        for key, value in self.sizes().items():
            most = {"hidden_size": info.hidden_size, "intermediate_size": info.intermediate_size,
                    "num_attention_heads": info.num_heads}[key]
            if value > most:
                problems.append(f"student.{key} ({value}) exceeds the teacher's {most}")
        return problems

    def kept_layers(self, total: int) -> list[int]:
        if self.layers is not None:
            return list(self.layers)
        if self.num_layers is not None:
            return evenly_spaced(total, self.num_layers)
        return list(range(total))


def evenly_spaced(total: int, count: int) -> list[int]:
    """`count` of `total` layers, evenly spaced and ending at the last (3 of 6: 1, 3, 5), so the head keeps reading
    the layer it was trained on."""
    return [round((i + 1) * total / count) - 1 for i in range(count)]


def teacher_model(spec: str | None, state, stage: str):
    """The teacher: a copy of the model entering the stage, or the torch model at `spec` when it reads the same token
    ids and (for a classifier) means the same labels by the same ids."""
    if spec is None:
        return copy.deepcopy(state.model)
    from .checkpoint import open_model

    ckpt = open_model(spec)
    if ckpt.onnx is not None:
        raise TfcError(f"stage '{stage}': teacher {spec} is an ONNX model; a torch teacher is needed")
    if ckpt.tokenizer.get_vocab() != state.tokenizer.get_vocab():
        raise TfcError(f"stage '{stage}': teacher {spec} has another tokenizer than the model: the teacher must read "
                       "the same token ids")
    if head_labels(ckpt.config) != head_labels(state.config):
        raise TfcError(f"stage '{stage}': teacher {spec} has labels {head_labels(ckpt.config)}, the model has "
                       f"{head_labels(state.config)} (ids must mean the same labels)")
    return ckpt.model


def student_from_teacher(teacher, config: StudentConfig) -> tuple[object, list[int], list[dict]]:
    """A copy of `teacher` with the kept layers and sizes; returns it, the teacher layer each student layer came
    from, and the transforms that rebuild its shapes (transforms.py)."""
    from .arch import family_for
    from .arch.importance import uniform_keep
    from .arch.surgery import keep_layers, resize
    from .transforms import transform

    student = copy.deepcopy(teacher)
    family = family_for(student)
    total = len(family.layers())
    kept = config.kept_layers(total)
    records = []
    if kept != list(range(total)):
        keep_layers(family, kept)
        records.append(transform("layers", kept=kept, layers_before=total))
    sizes = config.sizes()
    if sizes:
        dims = family.dims()
        heads = sizes.get("num_attention_heads")
        if heads is not None and heads % dims.group_size:
            raise TfcError(f"student.num_attention_heads ({heads}) must be a multiple of the {dims.group_size} query "
                           "heads that share each key/value head")
        keep = uniform_keep(family, groups=None if heads is None else heads // dims.group_size,
                            ffn=sizes.get("intermediate_size"), hidden=sizes.get("hidden_size"))
        resize(family, keep)  # magnitude selection: no gate values to fold
        after = family.dims()
        records.append(transform("prune", method="distill-student", **keep.record(dims),
                                 prunable_params=after.prunable_params(), prunable_params_before=dims.prunable_params(),
                                 prunable_params_original=dims.prunable_params(),
                                 sparsity_of_original=1 - after.prunable_params() / dims.prunable_params()))
    return student, kept, records


def student_from_folder(spec: str, state, task: str, policy):
    """The student at `spec`, loaded for the task: a classifier keeps its head when its labels are the teacher's,
    and gets a new head for them when it has none."""
    from .model_info import model_info
    from .model_state import load_causal_lm, load_for_task

    info = model_info(spec, policy)
    if task == "causal-lm":
        student = load_causal_lm(info, policy)
    else:
        labels = head_labels(state.config)
        if info.has_classification_head and list(info.label_names) != labels:
            raise TfcError(f"student {spec} has labels {list(info.label_names)}, the teacher has {labels} (ids must "
                           "mean the same labels)")
        student = load_for_task(info, labels, policy)
    if student.tokenizer.get_vocab() != state.tokenizer.get_vocab():
        raise TfcError(f"student {spec} has another tokenizer than the teacher: distillation compares the two models "
                       "token by token, so both must read the same token ids")
    return student

