"""Recipe (schema v1): YAML -> typed, validated `Recipe`. Every problem names the file and line."""
from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from .errors import Problem, RecipeError
from .schema import build, param, short_repr, suggest
from .stages import STAGES
from .stages.base import REPRESENTATIONS, Stage
from .trust import PINNED_REVISION, LoadPolicy
from .yaml_lines import LineDict, LineList, load_yaml, yaml_error_problem

SCHEMA_VERSION = 1
SAFE_NAME = re.compile(r"^[^./\\\x00-\x1f][^/\\\x00-\x1f]{0,127}$")  # a run name becomes a folder name: no '/', no leading '.'

# numpy seeds must be below 2**32 and every stage starts from seed + its index: 2**31 - 1 leaves room for both.
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class LmEvalConfig:
    tasks: list = param([], help="lm-evaluation-harness task names (its own, or defined in include_path's YAML files)")
    include_path: list = param([], help="folders of local task YAML files (how a run works offline)")
    num_fewshot: int = param(0, help="examples shown before each question", min=0)
    limit: Optional[int] = param(None, help="score at most this many examples per task", min=1)


@dataclass(frozen=True)
class TaskConfig:
    type: Literal["text-classification", "causal-lm"] = param(
        help="text-classification (accuracy) or causal-lm (perplexity, generation speed)")
    dataset: Union[str, dict] = param(help="demo:NAME, a hub id, a folder, or {train: a.csv, validation: b.csv, ...}; "
                                      "for causal-lm also a .txt file")
    text: str = param("text", help="column holding the text")
    text_pair: Optional[str] = param(None, help="second text column, for sentence pairs")
    label: str = param("label", help="column holding the label (integers or names)")
    max_length: int = param(128, help="tokens per example (truncation); for causal-lm the perplexity window",
                            min=1, max=8192)
    stride: Optional[int] = param(None, help="causal-lm: tokens between perplexity windows (default: half the window)",
                                  min=1)
    max_eval_tokens: Optional[int] = param(None, help="causal-lm: score at most this many tokens of the text", min=2)
    max_train_samples: Optional[int] = param(None, help="use at most this many training examples", min=1)
    max_eval_samples: Optional[int] = param(None, help="evaluate on at most this many examples", min=1)
    eval_split: Optional[str] = param(None, help="split the report's metric is measured on (default: test, else validation)")
    eval: Literal["perplexity", "lm-eval"] = param(
        "perplexity", help="causal-lm: also score both models with EleutherAI's lm-evaluation-harness (task.lm_eval); "
        "perplexity is always measured")
    lm_eval: LmEvalConfig = param(LmEvalConfig(), help="causal-lm with eval: lm-eval: the harness's tasks and options")


@dataclass(frozen=True)
class GatesConfig:
    max_accuracy_drop: Optional[float] = param(None, help="largest allowed metric drop vs the baseline, absolute", min=0)
    min_speedup: Optional[float] = param(None, help="smallest allowed speedup vs the baseline: p50 latency, or decode "
                                         "tokens/s for causal-lm", min=0, min_exclusive=True)
    max_size_ratio: Optional[float] = param(None, help="largest allowed weights-on-disk ratio vs the baseline", min=0, min_exclusive=True)
    max_perplexity_increase: Optional[float] = param(
        None, help="causal-lm: largest allowed relative perplexity increase vs the baseline (0.1 = +10%)", min=0)
    max_lm_eval_drop: Optional[float] = param(
        None, help="causal-lm with eval: lm-eval: largest allowed drop of any higher-is-better harness metric (acc, "
        "exact_match, ...) vs the baseline, absolute (0.01 = 1 point)", min=0)


@dataclass(frozen=True)
class BenchConfig:
    batch_size: int = param(1, help="examples per timed call", min=1)
    seq_len: Optional[int] = param(None, help="tokens per example, inputs padded to this length (default: task.max_length, "
                                   "the length the model is evaluated at); causal-lm: the prompt (default: 64)",
                                   min=1, max=8192)
    threads: Optional[int] = param(None, help="intra-op threads for every runtime (default: physical cores)", min=1)
    warmup: int = param(10, help="untimed calls before timing", min=0)
    repeats: int = param(50, help="timed calls per model (causal-lm: timed generations)", min=3)
    decode_tokens: int = param(32, help="causal-lm: tokens generated after the seq_len-token prompt", min=1)


@dataclass(frozen=True)
class StageSpec:
    stage: Stage
    line: int

    @property
    def type(self) -> str:
        return self.stage.type


@dataclass(frozen=True)
class Recipe:
    path: Path
    name: str
    seed: int
    model: str
    task: TaskConfig
    stages: tuple[StageSpec, ...]
    gates: GatesConfig
    bench: BenchConfig
    output: Path
    sha256: str
    policy: LoadPolicy = LoadPolicy()
    lines: dict[str, int] = field(default_factory=dict, compare=False)

    @property
    def baseline_index(self) -> int:
        """Index of the first compressing stage: the baseline is the model just before it."""
        for i, spec in enumerate(self.stages):
            if spec.stage.compresses:
                return i
        return len(self.stages)


@dataclass(frozen=True)
class _Top:
    """The top-level keys; `stages` is checked item by item below."""

    model: str = param(help="a local HF folder, a hub id, or demo:NAME")
    task: TaskConfig = param(help="what the model does and the data it is measured on")
    stages: list = param(help="the compression stages, in order")
    name: Optional[str] = param(None, help="run name (default: the recipe file's stem)")
    seed: int = param(0, help="seed for data order, initialisation and sampling", min=0, max=MAX_SEED)
    gates: GatesConfig = param(GatesConfig(), help="quality gates; a failing one exits 3")
    bench: BenchConfig = param(BenchConfig(), help="latency protocol")
    output: Optional[str] = param(None, help="output folder (default: runs/<name>)")
    allow_pickle_weights: bool = param(False, help="load .bin/.pt weights (restricted unpickler) when no safetensors")
    trust_remote_code: bool = param(False, help="run the model repository's own code; needs a pinned revision")
    revision: Optional[str] = param(None, help="model revision (a commit hash to pin remote code)")


def _build_stages(raw, problems: list[Problem]) -> list[StageSpec]:
    if not isinstance(raw, list) or not raw:
        problems.append(Problem(getattr(raw, "line", None), "'stages' must be a non-empty list of stages"))
        return []
    specs = []
    for i, item in enumerate(raw):
        line = raw.line_of(i) if isinstance(raw, LineList) else None
        if not isinstance(item, dict) or "type" not in item:
            problems.append(Problem(line, f"stage {i + 1} must be a mapping with a 'type' key"))
            continue
        kind = item["type"]
        if not isinstance(kind, str):
            problems.append(Problem(line, f"stage {i + 1}: 'type' must be a stage name, got {short_repr(kind)}"))
            continue
        cls = STAGES.get(kind)
        if cls is None:
            problems.append(Problem(line, f"unknown stage type '{kind}'{suggest(kind, STAGES)} (known: {', '.join(sorted(STAGES))})"))
            continue
        params = LineDict({k: v for k, v in item.items() if k != "type"})
        params.line, params.key_lines = line or 0, getattr(item, "key_lines", {})
        if cls.variants:
            cls = _variant(cls, params, problems, f"stage {i + 1} ({kind})")
            if cls is None:
                continue
        config = build(cls.Config, params, problems, section=f"stage {i + 1} ({kind})", line=line)
        if config is not None:
            stage = cls(config)
            applied = set(stage.applied_options())
            for key in params:
                top = key.split(".")[0]
                if top not in applied:
                    problems.append(Problem(params.line_of(key), f"stage {i + 1} ({kind}): '{key}' does not apply to "
                                            f"{stage.configured_as()}; remove it"))
            specs.append(StageSpec(stage, line or 0))
    _check_order(specs, problems)
    return specs


def _variant(stage_type, params, problems: list[Problem], section: str):
    """The class of a stage type's chosen variant (quantize's `method:`), or None with a problem. Options that only
    another variant has are refused here, by name ("'bits' does not apply to method 'dynamic-int8'")."""
    key = stage_type.variant_key
    choice = params.get(key, stage_type.default_variant)
    if choice not in stage_type.variants:
        problems.append(Problem(params.line_of(key), f"'{key}' in {section} must be "
                                f"{' | '.join(repr(v) for v in stage_type.variants)}, got {short_repr(choice)}"))
        return None
    cls = stage_type.variants[choice]
    own = {f.name for f in dataclasses.fields(cls.Config)}
    others = {f.name for variant in stage_type.variants.values() for f in dataclasses.fields(variant.Config)} - own
    for name in [k for k in params if k in others]:
        problems.append(Problem(params.line_of(name), f"{section}: '{name}' does not apply to {key} '{choice}'; remove it"))
        del params[name]
    return cls


def _check_order(specs: list[StageSpec], problems: list[Problem]) -> None:
    pruned = None  # the last pruning stage: a later one must prune further (targets count from the original model)
    for spec in specs:
        target = spec.stage.sparsity_target()  # None: a target that is not a sparsity (a measured speedup)
        if (spec.stage.prunes_structure and pruned is not None and None not in (target, pruned[1])
                and target <= pruned[1]):
            problems.append(Problem(spec.line, f"stage '{spec.type}' follows a pruning stage (line {pruned[0]}) with "
                                    f"target_sparsity {pruned[1]:g}: its own target ({target:g}) must be higher"))
        if spec.stage.prunes_structure:
            pruned = (spec.line, target)
    representation, made_by = "torch", None  # what each stage receives: the recipe's model is a float torch model
    for spec in specs:
        if representation not in spec.stage.accepts():
            problems.append(Problem(spec.line, f"stage '{spec.type}' takes {_described(spec.stage.accepts())}, but "
                                    f"'{made_by.type}' (line {made_by.line}) leaves {REPRESENTATIONS[representation]}: "
                                    f"put '{spec.type}' before it"))
        representation, made_by = spec.stage.produces(representation), spec


def _described(representations: tuple[str, ...]) -> str:
    return " or ".join(REPRESENTATIONS[r] for r in representations)


_TASK_GATES = {"max_accuracy_drop": "text-classification", "max_perplexity_increase": "causal-lm"}
_NOT_FOR_TASK = {"text-classification": ("stride", "max_eval_tokens"),
                 "causal-lm": ("text_pair", "max_train_samples", "max_eval_samples")}


def _task_gate_problems(top: _Top, data) -> list[Problem]:
    """A gate or task option that means nothing for the recipe's task is an error, not silently ignored."""
    problems, task = [], top.task.type
    gates = data.get("gates") if isinstance(data.get("gates"), LineDict) else {}
    for gate, applies in _TASK_GATES.items():
        if getattr(top.gates, gate) is not None and applies != task:
            problems.append(Problem(gates.line_of(gate), f"gate '{gate}' applies to task '{applies}', not '{task}'"))
    task_map = data["task"]
    columns = [(k, getattr(top.task, k)) for k in ("text", "text_pair", "label") if getattr(top.task, k)]
    if task == "text-classification" and len({c for _, c in columns}) < len(columns):
        problems.append(Problem(task_map.line, "task: text, text_pair and label must name different columns, got "
                                + ", ".join(f"{k}: {c}" for k, c in columns)))
    for key in _NOT_FOR_TASK[task]:
        if getattr(top.task, key) is not None:
            problems.append(Problem(task_map.line_of(key), f"task option '{key}' does not apply to task '{task}'"))
    if task == "causal-lm" and top.task.max_length < 2:
        problems.append(Problem(task_map.line_of("max_length"), "max_length is the perplexity window: at least 2 tokens "
                                "(one to predict from, one predicted)"))
    problems += _lm_eval_problems(top, task_map, gates)
    if task == "causal-lm" and top.task.stride is not None and top.task.stride > top.task.max_length:
        problems.append(Problem(task_map.line_of("stride"), f"stride ({top.task.stride}) cannot exceed max_length "
                                f"({top.task.max_length}), the perplexity window"))
    return problems


def _lm_eval_problems(top: _Top, task_map, gates) -> list[Problem]:
    """task.eval: lm-eval needs a causal LM, tasks and the harness installed; its options and gate need it."""
    wanted, options = top.task.eval == "lm-eval", top.task.lm_eval != LmEvalConfig()
    line = task_map.line_of("eval")
    if not wanted:
        found = [(task_map.line_of("lm_eval"), "task.lm_eval")] if options else []
        found += [(gates.line_of("max_lm_eval_drop"), "gate 'max_lm_eval_drop'")] if top.gates.max_lm_eval_drop is not None else []
        return [Problem(at, f"{what} needs task.eval: lm-eval") for at, what in found]
    if top.task.type != "causal-lm":
        return [Problem(line, "eval: lm-eval scores causal LMs; a classifier is measured by accuracy")]
    problems = []
    if not top.task.lm_eval.tasks:
        problems.append(Problem(task_map.line_of("lm_eval") or line, "eval: lm-eval needs task.lm_eval.tasks (names of "
                                "harness tasks, or of tasks defined in task.lm_eval.include_path)"))
    if any(not isinstance(t, str) for t in top.task.lm_eval.tasks + top.task.lm_eval.include_path):
        problems.append(Problem(task_map.line_of("lm_eval"), "task.lm_eval.tasks and include_path are lists of strings"))
    missing = [p for p in top.task.lm_eval.include_path if isinstance(p, str) and not Path(p).expanduser().exists()]
    if missing:
        problems.append(Problem(task_map.line_of("lm_eval"), f"task.lm_eval.include_path: no such folder {missing[0]}"))
    from .lm.harness import HELP, available

    if not available():
        problems.append(Problem(line, f"eval: lm-eval needs lm-evaluation-harness, which is not installed: {HELP}"))
    return problems


def parse_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file. Raises RecipeError listing every problem found."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(str(path), [Problem(None, "no such recipe file")])
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise RecipeError(str(path), [Problem(line, f"not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); "
                                      "save the recipe as UTF-8")]) from None
    return parse_recipe_text(text, path)


LM_PROMPT_TOKENS = 64  # the default prompt a causal LM's generation is timed after


def _resolved_bench(top: _Top) -> BenchConfig:
    """Latency measured on inputs as long as the ones evaluated (a user's real inputs), unless the recipe says."""
    if top.bench.seq_len is not None:
        return top.bench
    length = LM_PROMPT_TOKENS if top.task.type == "causal-lm" else top.task.max_length
    return dataclasses.replace(top.bench, seq_len=length)


def parse_recipe_text(text: str, path: Path) -> Recipe:
    try:
        data, problems = load_yaml(text)
    except yaml.YAMLError as err:
        raise RecipeError(str(path), [yaml_error_problem(err)]) from None
    if not isinstance(data, dict):
        raise RecipeError(str(path), problems + [Problem(1, "a recipe must be a YAML mapping (model:, task:, stages:, ...)")])
    top = build(_Top, data, problems, section="recipe")
    stages = _build_stages(data.get("stages"), problems) if "stages" in data else []
    if top is not None and isinstance(top.task.dataset, dict) and not top.task.dataset:
        problems.append(Problem(data["task"].line_of("dataset"), "'dataset' mapping names no split files"))
    if top is not None and top.trust_remote_code and not PINNED_REVISION.match(top.revision or ""):
        problems.append(Problem(data.line_of("trust_remote_code"), "trust_remote_code needs `revision:` pinned to a commit "
                                "hash, so the code that runs is the code that was reviewed"))
    if top is not None:
        problems += _task_gate_problems(top, data)
        if top.name is not None and not SAFE_NAME.match(top.name):
            problems.append(Problem(data.line_of("name"), f"'name' must be a folder name (no '/' or '\\', not starting "
                                    f"with '.', at most 128 characters), got {short_repr(top.name)}: it names the "
                                    "output folder runs/<name>"))
    if problems:
        raise RecipeError(str(path), sorted(problems, key=lambda p: p.line or 0))
    name = top.name or path.stem
    return Recipe(
        path=path, name=name, seed=top.seed, model=top.model, task=top.task, stages=tuple(stages),
        gates=top.gates, bench=_resolved_bench(top), output=Path(top.output or f"runs/{name}").expanduser(),
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        policy=LoadPolicy(top.allow_pickle_weights, top.trust_remote_code, top.revision),
        lines={k: data.line_of(k) for k in data},
    )


def data_problems(recipe: Recipe, info: Any = None) -> list[Problem]:
    """What can be known about local data without loading it: files exist, the splits the stages need are there,
    csv/tsv/jsonl files name the columns the task reads, and (given the model's `info`) hold labels it can learn."""
    task, line = recipe.task, recipe.lines.get("task")
    dataset = task.dataset
    if isinstance(dataset, str) and (dataset.startswith("demo:") or not looks_like_local(dataset)):
        return []  # demo assets and hub ids are checked when loaded
    if task.type == "causal-lm" and isinstance(dataset, dict):
        dataset = {k: v for k, v in dataset.items() if not str(v).startswith("demo:")}
    if isinstance(dataset, str) and Path(dataset).expanduser().is_file():
        return [] if task.type == "causal-lm" else [Problem(line, f"dataset {dataset} is one file: give split files as a "
                                                            f"mapping, e.g. dataset: {{train: ..., test: {dataset}}}")]
    files = ({str(k): Path(str(v)).expanduser() for k, v in dataset.items()} if isinstance(dataset, dict)
             else _folder_files(Path(dataset).expanduser()))
    if files is None:
        return [Problem(line, f"dataset {dataset}: no such file or folder")]
    # a split is a file, or a folder of a save_to_disk dataset
    problems = [Problem(line, f"dataset file for split '{s}' not found: {f}") for s, f in files.items() if not f.exists()]
    if task.type == "causal-lm" or problems:
        return problems
    needs = [s.type for s in recipe.stages if s.stage.needs_train()]
    if needs and "train" not in files:
        problems.append(Problem(line, f"stage(s) {', '.join(sorted(set(needs)))} need a 'train' split; the dataset has "
                                f"{', '.join(files) or 'no split files'}"))
    if task.eval_split and task.eval_split not in files and not (task.eval_split == "validation" and "train" in files):
        problems.append(Problem(line, f"eval_split '{task.eval_split}' is not among the dataset's splits ({', '.join(files)})"))
    wanted = [c for c in (task.text, task.text_pair, task.label) if c]
    for split, f in files.items():
        columns = header_columns(f)
        missing = [c for c in wanted if columns is not None and c not in columns]
        if missing:
            problems.append(Problem(line, f"dataset file {f} (split '{split}') has no column "
                                    f"{', '.join(repr(c) for c in missing)} (columns: {', '.join(columns)})"))
    if info is not None and not problems:
        from .label_checks import label_problems

        problems += [Problem(line, message) for message in
                     label_problems(files, task.label, info.label_names, needs_train=bool(needs))]
    return problems


def _position_problems(recipe: Recipe, info: Any) -> list[Problem]:
    """Sequence lengths the model's positions cannot hold fail late (after every stage ran): catch them here."""
    lm = recipe.task.type == "causal-lm"
    checks = [(recipe.lines.get("task"), recipe.task.max_length, "task.max_length" + (" (the perplexity window)" if lm else "")),
              (recipe.lines.get("bench"), recipe.bench.seq_len + (recipe.bench.decode_tokens if lm else 0),
               "bench.seq_len + bench.decode_tokens" if lm else "bench.seq_len")]
    return [Problem(line, message) for line, tokens, what in checks if (message := info.position_problem(tokens, what))]


def _task_mismatch(spec: StageSpec, task: str) -> str:
    message = f"{spec.stage.described()} does not apply to task '{task}' (it applies to {', '.join(spec.stage.tasks)})"
    stage_type = STAGES[spec.type]
    fitting = [name for name, cls in stage_type.variants.items() if task in cls.tasks]
    return message + (f"; for {task} use {stage_type.variant_key}: {' | '.join(fitting)}" if fitting else "")


def stage_problems(recipe: Recipe, info: Any) -> None:
    """Checks that need the model's config (no weights): each stage's own, and the task head rule."""
    problems, task = [], recipe.task.type
    for spec in recipe.stages:
        if task not in spec.stage.tasks:
            problems.append(Problem(spec.line, _task_mismatch(spec, task)))
            continue
        problems += [Problem(spec.line, f"stage '{spec.type}': {msg}") for msg in spec.stage.validate(info, task)]
    problems += _position_problems(recipe, info) + data_problems(recipe, info)
    if task == "causal-lm":
        if not info.is_causal_lm:
            problems.append(Problem(recipe.lines.get("model"), f"model '{recipe.model}' is not a causal LM "
                                    f"(architectures: {', '.join(info.architectures) or 'none'})"))
    elif info.head_problem:
        problems.append(Problem(recipe.lines.get("model"), f"model '{recipe.model}': {info.head_problem}"))
    elif not info.has_classification_head:
        first = next((s for s in recipe.stages if s.stage.gives_head), None)
        if first is None or first is not recipe.stages[0]:
            problems.append(Problem(recipe.lines.get("model"), f"model '{recipe.model}' has no trained classification head "
                                    "for this task: make 'finetune' the first stage"))
    if problems:
        raise RecipeError(str(recipe.path), problems)


def looks_like_local(spec: str) -> bool:
    return Path(spec).expanduser().exists() or spec.startswith((".", "/", "~")) or spec.endswith(DATA_SUFFIXES)


def _folder_files(path: Path) -> dict[str, Path] | None:
    """Split name -> file for a data folder (None if there is no such folder)."""
    if not path.is_dir():
        return None
    if (path / "dataset_dict.json").is_file():
        import json

        try:
            return {s: path / s for s in json.loads((path / "dataset_dict.json").read_text())["splits"]}
        except (ValueError, KeyError, TypeError):
            return {}
    from .data import split_name

    return {split_name(f.stem): f for f in sorted(path.iterdir()) if f.suffix.lower() in DATA_SUFFIXES}


DATA_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".txt")


def header_columns(path: Path) -> list[str] | None:
    """The column names of a csv/tsv (its header) or jsonl (its first record) file; None when not cheaply known."""
    import csv
    import json

    suffix = path.suffix.lower()
    if not path.is_file() or suffix not in (".csv", ".tsv", ".jsonl"):
        return None
    try:
        with path.open(encoding="utf-8", newline="") as f:
            if suffix == ".jsonl":
                first = next((ln for ln in f if ln.strip()), "")
                record = json.loads(first) if first else {}
                return list(record) if isinstance(record, dict) else None
            return next(csv.reader(f, delimiter="\t" if suffix == ".tsv" else ","), [])
    except (OSError, UnicodeDecodeError, ValueError, csv.Error):
        return None  # unreadable: the run says why, with the file's name
