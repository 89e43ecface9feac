"""`tfc_cli.compress(...)`: a recipe run from Python (a notebook, a script), with what `tfc compress` does and writes.

The recipe is a file path, YAML text or a dict. A model and tokenizer, or a `datasets.DatasetDict`, already in
memory are saved (safetensors, `save_to_disk`) into a temporary folder for the run and stand in for the recipe's
`model:` / `task.dataset:`; the report names that folder, and the model card names no base model.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import GateFailure, UsageError
from .model_card import IN_MEMORY_PREFIX


@dataclass
class Result:
    """A finished run: its report (report.json as a dict), the output folder, and whether every gate passed."""
    report: dict
    output: Path
    _model: Any = field(default=None, repr=False)

    @property
    def passed(self) -> bool:
        return all(g["passed"] for g in self.report["gates"])

    @property
    def model(self):
        """The compressed model as saved (tfc_cli.load of the output folder), loaded on first use."""
        if self._model is None:
            from .checkpoint import load

            self._model = load(self.output)
        return self._model

    def __repr__(self) -> str:
        cmp_ = self.report["comparison"]
        return (f"Result({self.report['recipe']['name']!r}, output={str(self.output)!r}, "
                f"speedup={cmp_['speedup']:.2f}x, size_ratio={cmp_['size_ratio']:.3f}, passed={self.passed})")

    def _repr_markdown_(self) -> str:  # how Jupyter shows a Result: the report
        from .report import markdown

        return markdown(self.report)


def _recipe_text(recipe: str | Path | dict) -> tuple[str, Path]:
    """(YAML text, the path the run records) of a recipe given as a file, YAML text or a dict."""
    if isinstance(recipe, dict):
        return yaml.safe_dump(recipe, sort_keys=False), Path("recipe.yaml")
    if isinstance(recipe, Path) or ("\n" not in str(recipe) and ":" not in str(recipe).split("/")[-1]):
        path = Path(recipe)
        if not path.is_file():
            raise UsageError(f"{path}: no such recipe file (give a path, YAML text or a dict)")
        return path.read_text(encoding="utf-8"), path
    return str(recipe), Path("recipe.yaml")


def _with_objects(text: str, model, tokenizer, dataset, tmp: Path) -> str:
    """The recipe with in-memory objects saved under `tmp` in place of its model / dataset."""
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise UsageError("a recipe must be a YAML mapping (model:, task:, stages:, ...)")
    if model is not None:
        if tokenizer is None:
            raise UsageError("compress(model=...) needs tokenizer= too: the output folder must carry it")
        folder = tmp / "model"
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        data["model"] = str(folder)
    if dataset is not None:
        if not hasattr(dataset, "save_to_disk") or not hasattr(dataset, "keys"):
            raise UsageError("compress(dataset=...) takes a datasets.DatasetDict (splits train / validation / test)")
        folder = tmp / "dataset"
        dataset.save_to_disk(str(folder))
        data.setdefault("task", {})["dataset"] = str(folder)
    return yaml.safe_dump(data, sort_keys=False)


def compress(recipe: str | Path | dict, output: str | Path | None = None, *, overwrite: bool = False,
             model=None, tokenizer=None, dataset=None, quiet: bool = False, resume: bool = False) -> Result:
    """Run a recipe as `tfc compress` does; returns the Result. A failed gate does not raise: see Result.passed.
    Recipe errors raise tfc_cli.errors.RecipeError (with file:line), other failures TfcError."""
    from . import progress
    from .pipeline import compress as run, prepare_recipe
    from .recipe import parse_recipe_text

    progress.set_quiet(quiet)
    text, path = _recipe_text(recipe)
    with tempfile.TemporaryDirectory(prefix=IN_MEMORY_PREFIX) as tmp:
        if model is not None or dataset is not None:
            text = _with_objects(text, model, tokenizer, dataset, Path(tmp))
        prepared = prepare_recipe(parse_recipe_text(text, path), output, overwrite)
        try:
            report = run(prepared, overwrite=overwrite, resume=resume)
        except GateFailure as failure:
            report = failure.report
    return Result(report, prepared.output)
