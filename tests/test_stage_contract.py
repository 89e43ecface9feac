"""The contract every stage keeps with every family it accepts: validate, apply, save, reload in a fresh process,
equal logits. Rows come from the stage list x the family table: a new stage or family adds its rows."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import tfc_cli
from tfc_cli.cli.app import app
from tfc_cli.runtimes import runner_for

from tests.tiny_families import CONFIGS, DECODERS, make_family_folder

runner = CliRunner()
SHORT_COFI = ("{type: cofi, target_sparsity: 0.3, epochs: 2, sparsity_warmup_epochs: 1, finetune_epochs: 1, "
              "batch_size: 16, learning_rate: 1.0e-3, reg_learning_rate: 0.1}")
STAGES = {  # a short configuration of every stage type (and quantization method)
    "finetune": "{type: finetune, epochs: 1, batch_size: 16}",
    "distill": "{type: distill, epochs: 1, batch_size: 16, student: {num_layers: 2}, attention_weight: 1.0}",
    "distill-narrow": ("{type: distill, epochs: 1, batch_size: 16, student: {layers: [0, 2], hidden_size: 12, "
                       "intermediate_size: 10, num_attention_heads: 2}}"),
    "prune-fisher": ("{type: prune, target_sparsity: 0.3, granularity: [heads, ffn, hidden], criterion: fisher, "
                     "calibration_samples: 8, recover: {epochs: 1, batch_size: 16, hidden_weight: 1.0}}"),
    "prune-mask-search": "{type: prune, method: mask-search, target_sparsity: 0.3, calibration_samples: 16}",
    "prune-layers": ("{type: prune, target_sparsity: 0.3, granularity: layers, criterion: activation, "
                     "calibration_samples: 16}"),
    "sparsify-wanda": "{type: sparsify, method: wanda, sparsity: 0.5, calibration_samples: 8}",
    "sparsify-sparsegpt": "{type: sparsify, method: sparsegpt, sparsity: 0.5, calibration_samples: 8}",
    "sparsify-gradual": "{type: sparsify, method: gradual-magnitude, sparsity: 0.5, epochs: 2, batch_size: 16}",
    "sparsify-movement": ("{type: sparsify, method: movement, sparsity: 0.5, epochs: 2, batch_size: 16, "
                          "learning_rate: 1.0e-3, scope: global}"),
    "cofi": SHORT_COFI,
    "cofi-twice": [SHORT_COFI, SHORT_COFI.replace("target_sparsity: 0.3", "target_sparsity: 0.5")],
    "dynamic-int8-torch": "{type: quantize, method: dynamic-int8, backend: torch}",
    "dynamic-int8-onnx": "{type: quantize, method: dynamic-int8, backend: onnxruntime}",
    "static-int8": "{type: quantize, method: static-int8, calibration_samples: 16}",
    "qat-int8": "{type: quantize, method: qat-int8, calibration_samples: 16, qat_batch_size: 16}",
    "weight-only-int4": "{type: quantize, method: weight-only, bits: 4, group_size: 16}",
}
# The default run keeps cofi on every family but RoBERTa, and the rows named below; the rest (exporters, a plain
# epoch, repeats, more families) run with -m slow.
DEFAULT = {"cofi": set(CONFIGS) - {"roberta"},  # RoBERTa is BERT's code path; its row runs with -m slow
           "cofi-twice": {"llama"}, "dynamic-int8-torch": {"distilbert", "qwen2"},  # cofi-twice-bert: 48 s, slow
           "weight-only-int4": {"gemma3_text"},  # Gemma 3 exports extra scalar inputs for its sliding window
           # a narrower student and whole-layer pruning are covered by test_distill.py, test_prune.py and the
           # layer-removal tests of test_families.py
           "distill": {"bert"}, "prune-fisher": {"llama"}, "prune-mask-search": {"mpnet", "llama"},
           "sparsify-wanda": {"qwen2"}, "sparsify-sparsegpt": {"distilbert"}, "sparsify-gradual": {"bert"},
           "sparsify-movement": {"llama"}}


def rows():
    for stage in STAGES:
        for model_type in sorted(CONFIGS):
            marks = [] if model_type in DEFAULT.get(stage, ()) else [pytest.mark.slow]
            yield pytest.param(stage, model_type, id=f"{stage}-{model_type}", marks=marks)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {t: make_family_folder(tmp_path_factory.mktemp(t), t) for t in CONFIGS}


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Path:
    import random

    from tests.conftest import WORDS

    rng = random.Random(0)
    path = tmp_path_factory.mktemp("text") / "text.txt"
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(200)))
    return path


def recipe_for(tmp_path, model: Path, model_type: str, stages, tiny_data: Path, text: Path) -> Path:
    stages = stages if isinstance(stages, list) else [stages]
    if model_type in DECODERS:
        task = f"{{type: causal-lm, dataset: {text}, max_length: 16}}"
        bench = "{seq_len: 8, decode_tokens: 4, warmup: 1, repeats: 3}"
    else:
        task = f"{{type: text-classification, dataset: {tiny_data}, text: sentence, label: sentiment, max_length: 16}}"
        bench = "{batch_size: 2, seq_len: 16, warmup: 1, repeats: 3}"
    body = "\n".join(f"  - {s}" for s in stages)
    path = tmp_path / "recipe.yaml"
    path.write_text(f"name: contract\nmodel: {model}\ntask: {task}\nstages:\n{body}\nbench: {bench}\n"
                    f"output: {tmp_path / 'out'}\n")
    return path


FRESH = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tfc_cli
    from tfc_cli.runtimes import runner_for
    ckpt = tfc_cli.load(sys.argv[1])
    batch = {k: np.array(v, dtype=np.int64) for k, v in json.loads(sys.argv[2]).items()}
    print(json.dumps(runner_for(ckpt)(batch).tolist()))
""")


def test_every_stage_type_and_method_has_contract_rows():
    """A stage (or quantization method) added to the registry without a row here fails, so none goes untested."""
    import yaml

    from tfc_cli.stages import STAGES as REGISTERED

    registered = {(kind, choice) for kind, cls in REGISTERED.items() for choice in (cls.variants or [None])}
    rows_for = set()
    for configs in STAGES.values():
        for config in configs if isinstance(configs, list) else [configs]:
            stage = yaml.safe_load(config)
            variants = REGISTERED[stage["type"]].variants
            rows_for.add((stage["type"], stage.get("method", REGISTERED[stage["type"]].default_variant) if variants else None))
    assert registered <= rows_for, f"stages without a contract row: {sorted(registered - rows_for, key=str)}"


@pytest.mark.parametrize("stage, model_type", list(rows()))
def test_stage_contract(stage, model_type, folders, tiny_data, text, tmp_path):
    recipe = recipe_for(tmp_path, folders[model_type], model_type, STAGES[stage], tiny_data, text)
    checked = runner.invoke(app, ["validate", str(recipe)])
    if checked.exit_code == 2:  # the stage does not claim this family or task: a clear refusal, nothing else
        assert "does not apply" in checked.output or "not supported" in checked.output, checked.output
        return
    assert checked.exit_code == 0, checked.output
    result = runner.invoke(app, ["compress", str(recipe), "--quiet"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    manifest = json.loads((out / "tfc.json").read_text())
    stages = STAGES[stage] if isinstance(STAGES[stage], list) else [STAGES[stage]]
    if stage.startswith("cofi"):
        assert [t["op"] for t in manifest["transforms"]] == ["prune"] * len(stages)
    if stage.startswith("distill"):  # a 2-layer student, narrower where asked, that the config describes
        ops = ["layers", "prune", "distill"] if stage == "distill-narrow" else ["layers", "distill"]
        assert [t["op"] for t in manifest["transforms"]] == ops
        assert tfc_cli.load(out).config.num_hidden_layers == 2
    if stage.startswith("prune"):
        assert [t["op"] for t in manifest["transforms"]] == ["layers" if stage == "prune-layers" else "prune"]
        assert abs(manifest["transforms"][0]["sparsity_of_original"] - 0.3) < 0.1
    if stage.startswith("sparsify"):
        assert [t["op"] for t in manifest["transforms"]] == ["sparsify"]
        assert manifest["transforms"][0]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    ids = np.array([[5, 17, 42, 9, 33, 61, 7, 20]], dtype=np.int64)
    batch = {"input_ids": ids} if model_type in DECODERS else {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    here = runner_for(tfc_cli.load(out))(batch)
    fresh = subprocess.run([sys.executable, "-c", FRESH, str(out), json.dumps({k: v.tolist() for k, v in batch.items()})],
                           capture_output=True, text=True, timeout=300)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    np.testing.assert_allclose(np.array(json.loads(fresh.stdout)), here, atol=1e-5)
