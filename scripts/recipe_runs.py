"""What the LM benchmark scripts share: write a recipe where it changed, and run it unless a finished run of that
exact recipe exists (so an interrupted benchmark goes on where it stopped)."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def write_recipe(path: Path, spec: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(spec, sort_keys=False)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def run(recipe: Path) -> dict:
    """The report of `recipe`, from its finished run when the recipe is unchanged, else from running it."""
    spec = yaml.safe_load(recipe.read_text())
    out = Path(spec["output"])
    sha = hashlib.sha256(recipe.read_text().encode()).hexdigest()
    if (out / "report.json").exists() and json.loads((out / "tfc.json").read_text())["recipe"]["sha256"] == sha:
        return json.loads((out / "report.json").read_text())
    done = subprocess.run([sys.executable, "-m", "tfc_cli", "compress", str(recipe), "--overwrite"], cwd=ROOT)
    if done.returncode not in (0, 3):  # 3: a gate failed or was inconclusive; the report is complete
        sys.exit(done.returncode)
    return json.loads((out / "report.json").read_text())
