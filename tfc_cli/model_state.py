"""The model as it passes from stage to stage, and how it is loaded at the start of a run."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from .errors import TfcError
from .hf_classes import quiet_transformers
from .model_info import ModelInfo
from .strict_load import align_pad_token, check_tokenizer_fits, from_pretrained_strictly
from .trust import LoadPolicy, check_local_weights, load_tokenizer


@dataclass
class ModelState:
    model: Any  # a transformers model (torch); None once the model lives only as ONNX
    tokenizer: Any
    config: Any  # transformers PretrainedConfig
    onnx: bytes | None = None  # serialized ONNX model (run by ONNX Runtime, or OpenVINO when quantized for it)
    transforms: list = field(default_factory=list)  # what tfc did to the model, in order (tfc.json schema 2)

    @property
    def runtime(self) -> str:
        from .transforms import graph_runtime

        return graph_runtime(self.transforms) if self.onnx is not None else "torch"


def load_causal_lm(info: ModelInfo, policy: LoadPolicy = LoadPolicy()) -> ModelState:
    from transformers import AutoModelForCausalLM

    if info.quantized:
        raise TfcError(f"{info.source} is already quantized; compress from a float model")
    quiet_transformers()
    check_local_weights(info.source, policy)
    try:
        tokenizer = load_tokenizer(info.source, policy)
        model = from_pretrained_strictly(AutoModelForCausalLM, info.source, dtype="float32", **policy.weights_kwargs())
    except (OSError, ValueError) as err:
        raise TfcError(f"cannot load model {info.source}: {str(err).splitlines()[0]}") from None
    check_tokenizer_fits(tokenizer, model.config, info.source)
    return ModelState(model=model.eval(), tokenizer=tokenizer, config=model.config)


def load_for_task(info: ModelInfo, label_names: list[str], policy: LoadPolicy = LoadPolicy()) -> ModelState:
    """Load a float model for classification: a trained head as it is (its id2label is never rewritten; the data's
    labels were matched to it by name, see labels.py), or a new head for `label_names`."""
    from transformers import AutoModelForSequenceClassification

    if info.quantized:
        raise TfcError(f"{info.source} is already quantized; compress from a float model")
    quiet_transformers()
    num_labels = len(label_names)
    if info.has_classification_head and info.num_labels != num_labels:
        raise TfcError(f"model {info.source} classifies {info.num_labels} labels but the dataset has {num_labels}: "
                       f"{', '.join(label_names)}")
    if info.pruned:  # pruned shapes are rebuilt from tfc.json, which from_pretrained does not read
        from .checkpoint import load

        ckpt = load(info.source)
        return ModelState(model=ckpt.model, tokenizer=ckpt.tokenizer, config=ckpt.config,
                          transforms=copy.deepcopy(info.transforms))
    check_local_weights(info.source, policy)
    head = {} if info.has_classification_head else {
        "num_labels": num_labels, "id2label": dict(enumerate(label_names)), "label2id": {n: i for i, n in enumerate(label_names)}}
    try:
        tokenizer = load_tokenizer(info.source, policy)
        model = from_pretrained_strictly(AutoModelForSequenceClassification, info.source,
                                         fresh_head=not info.has_classification_head, **policy.weights_kwargs(), **head)
    except (OSError, ValueError) as err:
        raise TfcError(f"cannot load model {info.source}: {str(err).splitlines()[0]}") from None
    check_tokenizer_fits(tokenizer, model.config, info.source)
    align_pad_token(model, tokenizer, info.source)
    model.eval()
    model.config.architectures = [type(model).__name__]  # saved configs then say the model has its head
    return ModelState(model=model, tokenizer=tokenizer, config=model.config)
