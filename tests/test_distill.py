"""`distill`: students taken from the teacher or from a folder, the losses, and recipe errors with file:line."""
from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import tfc_cli
from tfc_cli.arch import family_for
from tfc_cli.arch.importance import magnitude_scores, uniform_keep
from tfc_cli.cli.app import app
from tfc_cli.distill import relation_loss
from tfc_cli.student import evenly_spaced

from tests.tiny_families import tiny_model

runner = CliRunner()


@pytest.mark.parametrize("stage, message", [
    ("{type: distill}", "student: give layers, num_layers"),
    ("{type: distill, student: {layers: [0, 5]}}", "increasing layer indices in 0..1"),
    ("{type: distill, student: {layers: [1, 0]}}", "increasing layer indices"),
    ("{type: distill, student: {layers: [0], num_layers: 1}}", "layers or num_layers, not both"),
    ("{type: distill, student: {num_layers: 3}}", "exceeds the teacher's 2 layers"),
    ("{type: distill, student: {intermediate_size: 99}}", "exceeds the teacher's 37"),
    ("{type: distill, student: {model: x, num_layers: 1}}", "student.model is a whole student"),
    ("{type: distill, student: {num_layers: 1}, hidden_layers: [0, 1]}", "hidden_layers has 2 entries"),
    ("{type: distill, student: {num_layers: 1}, hidden_layers: [4]}", "hidden_layers must lie in 0..1"),
    ("{type: distill, student: {num_layers: 1}, alpha: 1.5}", "'alpha' must be <= 1"),
    ("{type: distill, student: {num_layer: 1}}", "did you mean 'num_layers'"),
])
def test_distill_recipe_errors(stage_error, stage, message):
    output = stage_error(stage)
    assert message in output, output


def test_evenly_spaced_layers_end_at_the_last():
    assert evenly_spaced(6, 3) == [1, 3, 5] and evenly_spaced(12, 4) == [2, 5, 8, 11] and evenly_spaced(4, 4) == [0, 1, 2, 3]
    assert evenly_spaced(6, 1) == [5]


def test_relation_loss_is_zero_for_equal_relations_whatever_the_width_and_positive_otherwise():
    torch.manual_seed(0)
    mask = torch.ones(2, 6)
    mask[1, 4:] = 0
    teacher = [torch.randn(2, 6, 12) for _ in range(3)]
    assert float(relation_loss(teacher, teacher, mask, heads=3)) == pytest.approx(0, abs=1e-6)
    # projections that differ from the teacher's by a rotation within each relation head: the same dot products,
    # so the same relations (the loss compares relations, never the projections themselves)
    rotation = torch.linalg.qr(torch.randn(4, 4))[0]
    rotated = [(t.reshape(2, 6, 3, 4) @ rotation).reshape(2, 6, 12) for t in teacher]
    assert float(relation_loss(rotated, teacher, mask, heads=3)) == pytest.approx(0, abs=1e-5)
    other = [torch.randn(2, 6, 6) for _ in range(3)]  # another width entirely: a real, positive loss
    assert float(relation_loss(other, teacher, mask, heads=3)) > 0.01
    # padded keys carry no weight: changing them changes nothing
    changed = [t.clone() for t in teacher]
    for t in changed:
        t[1, 4:] = 100.0
    assert float(relation_loss(changed, teacher, mask, heads=3)) == pytest.approx(0, abs=1e-6)


def test_causal_relations_ignore_later_tokens():
    torch.manual_seed(0)
    mask = torch.ones(1, 5)
    teacher = [torch.randn(1, 5, 8) for _ in range(3)]
    student = [t.clone() for t in teacher]
    for s in student:
        s[0, 4] = torch.randn(8)  # only the last token differs: under the causal mask only its own row changes
    causal = float(relation_loss(student, teacher, mask, heads=2, causal=True))
    full = float(relation_loss(student, teacher, mask, heads=2))
    assert 0 < causal < full


def test_uniform_keep_takes_the_largest_units_in_every_layer():
    model = tiny_model("llama")
    family = family_for(model)
    with torch.no_grad():
        for layer in family.layers():
            up, gate, down = family.ffn_linears(layer)
            for w in (up.weight, gate.weight):
                w[[3, 7]] *= 50  # units 3 and 7 dominate
            q, k, v, o = family.attention_linears(layer)
            k.weight[6:12] *= 50  # key/value group 1 (head dim 6)
    keep = uniform_keep(family, groups=1, ffn=2, hidden=None)
    assert keep.ffn == ((3, 7),) * 3 and keep.groups == ((1,),) * 3 and keep.hidden is None
    groups, units, hidden = magnitude_scores(family)
    assert len(groups[0]) == 3 and len(units[0]) == 22 and len(hidden) == 30


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, tiny_model, tiny_data):
    """A tiny fine-tuned BERT (2 layers) distilled into a 1-layer, narrower student with every loss on."""
    tmp = tmp_path_factory.mktemp("distill")
    recipe = tmp / "distill.yaml"
    recipe.write_text(f"""name: tiny-distill
model: {tiny_model}
task: {{type: text-classification, dataset: {tiny_data}, text: sentence, label: sentiment, max_length: 16}}
stages:
  - {{type: finetune, epochs: 3, learning_rate: 3.0e-3, batch_size: 16}}
  - type: distill
    student: {{num_layers: 1, hidden_size: 24, num_attention_heads: 2}}
    epochs: 2
    learning_rate: 3.0e-3
    batch_size: 16
    attention_weight: 1.0
bench: {{batch_size: 2, seq_len: 16, warmup: 1, repeats: 5}}
output: {tmp / 'out'}
""")
    result = runner.invoke(app, ["compress", str(recipe), "--quiet"])
    assert result.exit_code == 0, result.output
    return tmp / "out"


def test_a_narrower_student_is_built_trained_and_reported(distilled):
    report = json.loads((distilled / "report.json").read_text())
    summary = report["stages"][1]["summary"]
    assert summary["student_layers"] == 1 and summary["kept_teacher_layers"] == [1]
    assert summary["hint_pairs"] == [[0, 1]] and summary["student_params"] < summary["teacher_params"]
    assert len(summary["epochs"]) == 2 and summary["best_epoch"] in (0, 1, 2)
    ckpt = tfc_cli.load(distilled)
    dims = family_for(ckpt.model).dims()
    assert (dims.num_layers, dims.hidden, dims.heads(0)) == (1, 24, 2)
    assert [t["op"] for t in ckpt.manifest["transforms"]] == ["layers", "prune", "distill"]
    assert report["models"]["compressed"]["size"]["params"] < report["models"]["baseline"]["size"]["params"]


def test_a_student_from_a_folder_of_another_width_is_distilled_and_reloads(distilled, tiny_data, tmp_path):
    """The teacher is the distilled model's own input; the student is a plain BERT folder with no head, of another
    width and depth: it gets a head for the teacher's labels and reloads with the plain classes."""
    from transformers import AutoModelForSequenceClassification, BertConfig, BertModel

    from tests.conftest import make_tokenizer

    student = tmp_path / "student"
    torch.manual_seed(1)
    BertModel(BertConfig(vocab_size=99, hidden_size=20, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=15, max_position_embeddings=64)).save_pretrained(student)
    make_tokenizer().save_pretrained(student)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""name: folder-student
model: {distilled}
task: {{type: text-classification, dataset: {tiny_data}, text: sentence, label: sentiment, max_length: 16}}
stages:
  - {{type: distill, student: {{model: {student}}}, epochs: 1, batch_size: 16, learning_rate: 3.0e-3}}
bench: {{batch_size: 2, seq_len: 16, warmup: 1, repeats: 3}}
output: {tmp_path / 'out'}
""")
    result = runner.invoke(app, ["compress", str(recipe), "--quiet"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    manifest = json.loads((out / "tfc.json").read_text())
    assert [t["op"] for t in manifest["transforms"]] == ["distill"]  # the student's own history: none
    batch = {"input_ids": torch.tensor([[5, 17, 42, 9]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    with torch.no_grad():
        plain = AutoModelForSequenceClassification.from_pretrained(out).eval()(**batch).logits
        torch.testing.assert_close(tfc_cli.load(out).model(**batch).logits, plain)
    assert plain.shape == (1, 2) and AutoModelForSequenceClassification.from_pretrained(out).config.hidden_size == 20


def test_a_student_with_another_tokenizer_is_refused(distilled, tiny_data, tmp_path):
    from transformers import BertConfig, BertModel, BertTokenizer

    student = tmp_path / "student"
    BertModel(BertConfig(vocab_size=99, hidden_size=20, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=15, max_position_embeddings=64)).save_pretrained(student)
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "other", "words"]))
    BertTokenizer(str(tmp_path / "vocab.txt")).save_pretrained(student)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""name: bad-student
model: {distilled}
task: {{type: text-classification, dataset: {tiny_data}, text: sentence, label: sentiment, max_length: 16}}
stages:
  - {{type: distill, student: {{model: {student}}}, epochs: 1, batch_size: 16}}
output: {tmp_path / 'out'}
""")
    result = runner.invoke(app, ["compress", str(recipe), "--quiet"])
    assert result.exit_code != 0 and "another tokenizer than the teacher" in result.output, result.output
    assert not (tmp_path / "out").exists()
