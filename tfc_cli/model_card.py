"""README.md for an output folder: a Hugging Face model card generated from report.json.

The YAML front matter is what the Hub and its tools read (base_model, datasets, model-index, pipeline_tag, ...);
the body says what was done, what was measured and how, and how to run the folder on its own runtime. The
ONNX snippets use onnxruntime (openvino for a graph quantized for it) and tokenizers only: a deployment target does
not need torch, transformers or tfc (tests/test_model_card.py runs them so).
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from .assets import ASSETS
from .checkpoint import ONNX, SAFETENSORS
from .model_info import MANIFEST
from .report import is_lm_report, protocol_line, rows

# What each stage type does to a model, as a tag on the Hub
_TAGS = {"quantize": "quantized", "prune": "pruned", "cofi": "pruned", "sparsify": "sparse", "distill": "distilled",
         "finetune": "fine-tuned"}


def _hub_name(spec: str) -> tuple[str, str]:
    """(the id a model card names, a description) of a recipe's model or dataset: demo assets by their Hub ids."""
    if spec.startswith("demo:") and spec[5:] in ASSETS:
        asset = ASSETS[spec[5:]]
        return asset.hub_id, asset.about
    return spec, ""


# tfc_cli.compress saves in-memory models and data under a temporary folder of this name, gone after the run
IN_MEMORY_PREFIX = "tfc-inputs-"


def _in_memory(path: str) -> bool:
    return any(part.startswith(IN_MEMORY_PREFIX) for part in Path(path).parts)


def _library(weights: str) -> str:
    """The library that loads the folder: onnx (any ONNX runtime), transformers, or tfc where the plain classes
    refuse a changed structure."""
    return {ONNX: "onnx", SAFETENSORS: "transformers"}.get(weights, "tfc")


def _front_matter(report: dict, weights: str, runtime: str) -> dict:
    lm = is_lm_report(report)
    base, _ = _hub_name(report["models"]["baseline"]["source"])
    dataset, _ = _hub_name(str(report["task"]["dataset"]))
    compressed = report["models"]["compressed"]["metrics"]
    metric = "perplexity" if lm else "accuracy"
    metrics = [{"type": metric, "value": round(float(compressed[metric]), 4), "name": f"{metric} (compressed)"}]
    if not lm:
        metrics.append({"type": "f1", "value": round(float(compressed["macro_f1"]), 4), "name": "macro F1 (compressed)"})
    for name, entry in report["models"]["compressed"].get("lm_eval", {}).items():  # lm-evaluation-harness scores
        metrics.append({"type": name.split("/", 1)[1], "value": round(entry["value"], 4), "name": f"lm-eval {name} (compressed)"})
    pipeline_tag = "text-generation" if lm else "text-classification"
    tags = ["tfc", "compressed"] + sorted({_TAGS[s["type"]] for s in report["stages"] if s["type"] in _TAGS})
    if weights == ONNX:
        tags += ["onnx"] + (["openvino"] if runtime == "openvino" else [])
    card = {"base_model": base} if base and not _in_memory(base) else {}  # nothing to refer to
    if dataset and not Path(dataset).exists():  # a local file is no Hub dataset id
        card["datasets"] = [dataset]
    card |= {"library_name": _library(weights), "pipeline_tag": pipeline_tag,
             "tags": tags,
             "model-index": [{"name": report["recipe"]["name"], "results": [{
                 "task": {"type": pipeline_tag},
                 "dataset": {"name": str(report["task"]["dataset"]), "type": dataset or str(report["task"]["dataset"]),
                             "split": report["task"]["eval_split"]},
                 "metrics": metrics}]}]}
    return card


def _stage_line(i: int, stage: dict) -> str:
    config = ", ".join(f"{k}: {v}" for k, v in stage["config"].items() if v is not None and not isinstance(v, (dict, list)))
    summary = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in stage["summary"].items()
                        if not isinstance(v, (list, dict)))
    return (f"{i}. **{stage['type']}** ({stage['wall_s']:.0f} s)" + (f": {config}" if config else "")
            + (f". Result: {summary}" if summary else ""))


def _lengths(report: dict) -> str:
    length = report["task"].get("max_length")
    seq = report["models"]["baseline"]["latency"]["protocol"]["seq_len"]
    if is_lm_report(report):
        return (f"Perplexity was measured in windows of {length} tokens; latency with a {seq}-token prompt."
                if length else "")
    return (f"Inputs are truncated at {length} tokens, the length the model was trained and evaluated at "
            f"(`model_max_length` in tokenizer_config.json); latency was measured at {seq} tokens." if length else "")


def usage(report: dict, folder: str, weights: str, runtime: str) -> str:
    """Python that loads and runs the folder on its runtime."""
    lm = is_lm_report(report)
    if weights == ONNX:
        return _ONNX_LM.format(folder=folder) if lm else _ONNX_CLASSIFIER.format(folder=folder,
                                                                                 **_CLASSIFIER_ON[runtime])
    if weights == SAFETENSORS:
        return _TRANSFORMERS_LM.format(folder=folder) if lm else _TRANSFORMERS_CLASSIFIER.format(folder=folder)
    return _TFC.format(folder=folder, text="The play begins" if lm else "a gripping, funny film")


def model_card(report: dict, folder: Path) -> str:
    manifest = json.loads((folder / MANIFEST).read_text())
    weights, runtime = manifest.get("weights", SAFETENSORS), manifest.get("runtime", "torch")
    base, about = _hub_name(report["models"]["baseline"]["source"])
    front = yaml.safe_dump(_front_matter(report, weights, runtime), sort_keys=False, allow_unicode=True)
    name = report["recipe"]["name"]
    lines = ["---", front.rstrip(), "---", "", f"# {name}", "",
             f"`{report['models']['baseline']['source']}`" + (f" ({about})" if about else "")
             + f", compressed by tfc {report['tfc_version']} with the recipe `{name}` (sha256 "
             f"{report['recipe']['sha256'][:12]}, seed {report['seed']}); task {report['task']['type']} on "
             f"{report['task']['dataset']}. Baseline: {report['baseline_definition']}.", "",
             "## What was done", ""]
    lines += [_stage_line(i, s) for i, s in enumerate(report["stages"], 1)]
    lines += ["", "## Measured", "", "Baseline and compressed model measured in the same run, on the same data; "
              "latencies timed interleaved.", "", "| | baseline | compressed | change |", "|---|---:|---:|---:|"]
    lines += [f"| {' | '.join(r)} |" for r in rows(report)]
    lines += ["", f"Evaluated on the '{report['task']['eval_split']}' split"
              + (f" ({report['task']['held_out']})" if report["task"].get("held_out") else "")
              + f". Latency protocol: {protocol_line(report)}.", ""]
    if lengths := _lengths(report):
        lines += [lengths, ""]
    if report.get("warnings"):
        lines += ["**Read before trusting these numbers:**", ""] + [f"- {w}" for w in report["warnings"]] + [""]
    if report.get("gates"):
        lines += ["Gates: " + "; ".join(f"{g['name']} {'passed' if g['passed'] else 'FAILED'} ({g['value']:.4g} vs "
                                        f"{g['threshold']})" for g in report["gates"]) + ".", ""]
    lines += ["## How to use", "", "```python", usage(report, report["output"], weights, runtime).strip(), "```", "",
              "report.json holds every number above; report.html shows them with the accuracy/latency chart.", ""]
    return "\n".join(lines)


_TRANSFORMERS_CLASSIFIER = '''
from transformers import pipeline

classify = pipeline("text-classification", model="{folder}")
print(classify("a gripping, funny film"))
'''

_TRANSFORMERS_LM = '''
from transformers import pipeline

generate = pipeline("text-generation", model="{folder}")
print(generate("The play begins", max_new_tokens=32, do_sample=False)[0]["generated_text"])
'''

# Structure that the plain transformers classes cannot build: config.json makes them refuse the folder
_TFC = '''
import tfc_cli  # pip install tfc; the folder's modules are rebuilt from tfc.json

model = tfc_cli.load("{folder}")
print(model.predict(["{text}"]))
'''

_ONNX_CLASSIFIER = '''
# {runtime} and tokenizers only: no torch, transformers or tfc needed
import json

import numpy as np
{runtime_import}
from tokenizers import Tokenizer

folder = "{folder}"
config = json.load(open(f"{{folder}}/config.json"))
max_length = json.load(open(f"{{folder}}/tokenizer_config.json")).get("model_max_length", 512)
tokenizer = Tokenizer.from_file(f"{{folder}}/tokenizer.json")
tokenizer.enable_truncation(max_length)
{session}

encoding = tokenizer.encode("a gripping, funny film")
feeds = {{"input_ids": [encoding.ids], "attention_mask": [encoding.attention_mask], "token_type_ids": [encoding.type_ids]}}
{logits}
probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
print(config["id2label"][str(int(probs.argmax()))], float(probs.max()))
'''

# The classifier snippet's runtime-specific lines (their braces are code, not placeholders).
_CLASSIFIER_ON = {
    "onnxruntime": {
        "runtime": "onnxruntime", "runtime_import": "import onnxruntime as ort",
        "session": 'session = ort.InferenceSession(f"{folder}/model.onnx", providers=["CPUExecutionProvider"])',
        "logits": 'names = [i.name for i in session.get_inputs()]\n'
                  'logits = session.run(["logits"], {n: np.array(feeds[n], dtype=np.int64) for n in names})[0][0]'},
    "openvino": {
        "runtime": "openvino", "runtime_import": "import openvino as ov",
        "session": "# f32: on CPUs with AMX or AVX-512 BF16, OpenVINO would run the float layers in bf16 otherwise\n"
                   'model = ov.Core().compile_model(f"{folder}/model.onnx", "CPU", {"INFERENCE_PRECISION_HINT": "f32"})',
        "logits": "names = [i.get_any_name() for i in model.inputs]\n"
                  'logits = model({n: np.array(feeds[n], dtype=np.int64) for n in names})[model.output("logits")][0]'},
}

_ONNX_LM = '''
# onnxruntime and tokenizers only: no torch, transformers or tfc needed. Greedy decoding with the KV cache:
# the graph takes input_ids, position_ids and each layer's past keys/values, and returns logits and the present ones.
import json

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

folder = "{folder}"
config = json.load(open(f"{{folder}}/config.json"))
tokenizer = Tokenizer.from_file(f"{{folder}}/tokenizer.json")
session = ort.InferenceSession(f"{{folder}}/model.onnx", providers=["CPUExecutionProvider"])
past = [i for i in session.get_inputs() if len(i.shape) == 4]
outputs = [session.get_outputs()[0].name] + [o.name for o in session.get_outputs()[1:] if len(o.shape) == 4]
heads = config.get("num_key_value_heads") or config["num_attention_heads"]
head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
cache = [np.zeros((1, i.shape[1] if isinstance(i.shape[1], int) else heads, 0,
                   i.shape[3] if isinstance(i.shape[3], int) else head_dim), dtype=np.float32) for i in past]

ids, new, start = [], tokenizer.encode("The play begins", add_special_tokens=False).ids, 0
for _ in range(32):
    feeds = {{"input_ids": np.array([new], dtype=np.int64),
             "position_ids": np.arange(start, start + len(new), dtype=np.int64)[None]}}
    logits, *cache = session.run(outputs, feeds | {{i.name: c for i, c in zip(past, cache)}})
    start += len(new)
    new = [int(logits[0, -1].argmax())]
    ids += new
print(tokenizer.decode(ids))
'''
