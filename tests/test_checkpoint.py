"""Checkpoints: strict reload, clear errors for weights that do not fit, atomic output folders."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import tfc_cli
from tfc_cli.atomic import atomic_output
from tfc_cli.checkpoint import save, verify_reload
from tfc_cli.errors import TfcError, UsageError
from tfc_cli.transforms import transform
from tfc_cli.model_state import ModelState
from tfc_cli.quant.torch_int8 import quantize_modules
from tfc_cli.runtimes import runner_for


@pytest.fixture
def state(tiny_classifier):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier).eval()
    return ModelState(model=model, tokenizer=AutoTokenizer.from_pretrained(tiny_classifier), config=model.config)


def batch(tokenizer):
    enc = tokenizer(["the movie was good", "a dull plot"], padding=True, return_tensors="np")
    return {k: v.astype(np.int64) for k, v in enc.items()}


def saved(state, folder):
    folder.mkdir()
    save(state, folder, {"labels": ["negative", "positive"]})
    return folder


def test_float_checkpoint_round_trip_is_exact(state, tmp_path):
    folder = saved(state, tmp_path / "ckpt")
    assert verify_reload(state, folder, batch(state.tokenizer))[1] == 0.0
    # Shapes stayed standard, so plain transformers loads it too.
    from transformers import AutoModelForSequenceClassification

    plain = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        inputs = {k: torch.from_numpy(v) for k, v in batch(state.tokenizer).items()}
        torch.testing.assert_close(plain(**inputs).logits, state.model(**inputs).logits)


def test_int8_checkpoint_rebuilds_modules_from_manifest(state, tmp_path):
    names = quantize_modules(state.model)
    state.transforms = [transform("quantize", backend="torch", modules=names)]
    folder = saved(state, tmp_path / "ckpt")
    manifest = json.loads((folder / "tfc.json").read_text())
    assert manifest["transforms"][0]["modules"] == names
    tensors = load_file(str(folder / "model.tfc.safetensors"))
    assert tensors["bert.encoder.layer.0.attention.self.query.weight_int8"].dtype == torch.int8
    assert tensors["bert.embeddings.word_embeddings.weight_int8"].dtype == torch.int8
    assert verify_reload(state, folder, batch(state.tokenizer))[1] == 0.0


def test_missing_tensor_is_an_error_not_random_weights(state, tmp_path):
    folder = saved(state, tmp_path / "ckpt")
    tensors = load_file(str(folder / "model.safetensors"))
    del tensors["classifier.weight"]
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(TfcError, match="missing classifier.weight"):
        tfc_cli.load(folder)


def test_weights_that_disagree_with_config_are_an_error(state, tmp_path):
    folder = saved(state, tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 40
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(TfcError, match="shape mismatch"):
        tfc_cli.load(folder)


def test_unexpected_tensor_is_an_error(state, tmp_path):
    folder = saved(state, tmp_path / "ckpt")
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["extra.weight"] = torch.zeros(2)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(TfcError, match="unexpected extra.weight"):
        tfc_cli.load(folder)


def test_truncated_weights_give_a_clear_error(state, tmp_path):
    folder = saved(state, tmp_path / "ckpt")
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(TfcError, match="cannot read weights"):
        tfc_cli.load(folder)


def test_manifest_naming_a_module_the_model_lacks(state, tmp_path):
    folder = saved(state, tmp_path / "ckpt")
    manifest = json.loads((folder / "tfc.json").read_text())
    manifest["transforms"] = [transform("quantize", backend="torch", modules=["bert.nowhere"])]
    (folder / "tfc.json").write_text(json.dumps(manifest))
    with pytest.raises(TfcError, match="bert.nowhere"):
        tfc_cli.load(folder)


def test_atomic_output_replaces_only_on_success(tmp_path):
    final = tmp_path / "run"
    with atomic_output(final, overwrite=False) as tmp:
        (tmp / "a.txt").write_text("first")
        (tmp / "tfc.json").write_text('{"tfc_version": "0.1.0"}')
    assert (final / "a.txt").read_text() == "first"

    with pytest.raises(RuntimeError):
        with atomic_output(final, overwrite=True) as tmp:
            (tmp / "a.txt").write_text("half-written")
            raise RuntimeError("crash")
    assert (final / "a.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]

    with atomic_output(final, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("second")
    assert sorted(p.name for p in final.iterdir()) == ["b.txt"]
    (final / "tfc.json").write_text('{"tfc_version": "0.1.0"}')
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_non_empty_output_needs_overwrite(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "tfc.json").write_text('{"tfc_version": "0.1.0"}')
    with pytest.raises(UsageError, match="--overwrite"):
        with atomic_output(tmp_path / "run", overwrite=False):
            pass


def test_overwrite_never_replaces_a_folder_that_is_not_a_tfc_result(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    with pytest.raises(UsageError, match="not a tfc result"):
        with atomic_output(tmp_path / "mine", overwrite=True):
            pass
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "years of work"


def test_a_schema_1_manifest_still_loads(state, tmp_path):
    """Folders written before the transforms list (one slot per kind of change) load with the same logits."""
    from tfc_cli.arch import Gates, family_for
    from tfc_cli.arch.surgery import fold, resize

    family = family_for(state.model)
    dims = family.dims()
    heads, ffn = torch.ones(dims.num_layers, dims.max_groups), torch.ones(dims.num_layers, dims.max_ffn)
    heads[0, 1:3], ffn[1, ::2] = 0, 0
    resize(family, fold(family, Gates(heads=heads, ffn=ffn)))
    names = quantize_modules(state.model)
    after = family.dims()
    state.transforms = [transform("prune", hidden_size=dims.hidden, hidden_size_before=dims.hidden, head_dim=8,
                                  group_size=1, layers=[{"heads": g, "heads_before": 4, "kv_heads": g,
                                                         "kept_groups": list(range(g)), "ffn": f, "ffn_before": 37}
                                                        for g, f in zip(after.groups, after.ffn)]),
                        transform("quantize", backend="torch", modules=names)]
    folder = saved(state, tmp_path / "ckpt")
    manifest = json.loads((folder / "tfc.json").read_text())
    del manifest["transforms"]
    manifest |= {"schema_version": 1, "changes": {
        "pruning": {"method": "cofi", "hidden_size": dims.hidden, "hidden_size_total": dims.hidden, "head_dim": 8,
                    "sparsity": 0.2, "layers": [{"heads": g, "heads_total": 4, "ffn": f, "ffn_total": 37}
                                                for g, f in zip(after.groups, after.ffn)]},
        "quantization": {"method": "dynamic-int8", "backend": "torch", "modules": names}}}
    (folder / "tfc.json").write_text(json.dumps(manifest))
    ckpt = tfc_cli.load(folder)
    assert [t["op"] for t in ckpt.manifest.get("transforms", [])] == []  # read as schema 1 ...
    assert family_for(ckpt.model).dims().groups == after.groups  # ... and rebuilt from it
    np.testing.assert_allclose(runner_for(ckpt)(batch(state.tokenizer)), runner_for(state)(batch(state.tokenizer)),
                               atol=1e-5)
