"""Causal LMs scored by EleutherAI's lm-evaluation-harness (`pip install lm_eval`), on any tfc runtime.

The harness asks a model three things: the log-likelihood of a continuation after a context (multiple choice),
the rolling log-likelihood of a text (perplexity tasks), and greedy text until a stop string. `RunnerLM` answers
them with a tfc runner (torch or the ONNX graph with its KV cache), so the compressed model is scored as it was
saved, the same way as its baseline. Tasks are the harness's own names or local task YAMLs (`include_path`), which
is how a run works offline: its data must already be on this machine.
"""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np

from ..errors import TfcError, UsageError
from ..logits import log_softmax

HELP = "pip install lm_eval (EleutherAI's lm-evaluation-harness)"


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("lm_eval") is not None


def _lm_class():
    from lm_eval.api.model import LM

    class RunnerLM(LM):
        def __init__(self, runner, tokenizer, max_length: int, start_token: int):
            super().__init__()
            self.runner, self.tokenizer, self.max_length = runner, tokenizer, max_length
            self.start_token = start_token  # what an empty context is: the model's BOS (else EOS) token

        def _ids(self, text: str) -> list[int]:
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]

        def _prefix(self) -> list[int]:
            return [self.start_token]

        def _score(self, context: list[int], continuation: list[int]) -> tuple[float, bool]:
            """Log-likelihood of `continuation` after `context` (cut from the left to the window), and whether
            greedy decoding would have produced it."""
            ids = (context + continuation)[-(self.max_length + 1):]
            logits = self.runner({"input_ids": np.array([ids[:-1]], dtype=np.int64)})[0]
            n = len(continuation)
            scores = log_softmax(logits[-n:])
            targets = np.array(ids[-n:])
            return float(scores[np.arange(n), targets].sum()), bool((scores.argmax(-1) == targets).all())

        def loglikelihood(self, requests) -> list[tuple[float, bool]]:
            results = []
            for request in requests:
                context, continuation = request.args
                context_ids = self._ids(context) if context else self._prefix()
                results.append(self._score(context_ids, self._ids(continuation)))
            return results

        def loglikelihood_rolling(self, requests) -> list[float]:
            results = []
            for request in requests:
                ids, total = self._ids(request.args[0]), 0.0
                for start in range(0, len(ids), self.max_length):  # disjoint windows, as the harness's own models
                    window = ids[start:start + self.max_length]
                    context = ids[max(0, start - 1):start] or self._prefix()
                    total += self._score(context, window)[0]
                results.append(total)
            return results

        def generate_until(self, requests) -> list[str]:
            from ..predict import greedy

            results = []
            for request in requests:
                context, options = request.args
                stops = [s for s in (options.get("until") or []) if s]
                ids = (self._ids(context) or self._prefix())[-self.max_length:]
                new = greedy(self.runner, np.array([ids], dtype=np.int64), int(options.get("max_gen_toks", 64)),
                             self.tokenizer.eos_token_id)
                text = self.tokenizer.decode(new, skip_special_tokens=True)
                cut = min((text.index(s) for s in stops if s in text), default=len(text))
                results.append(text[:cut])
            return results

    return RunnerLM


def start_token(tokenizer, model_config) -> int:
    """The token an empty context starts from: BOS, else EOS, from the tokenizer or else the model's config."""
    for value in (tokenizer.bos_token_id, tokenizer.eos_token_id, getattr(model_config, "bos_token_id", None),
                  getattr(model_config, "eos_token_id", None)):
        if isinstance(value, list):
            value = value[0] if value else None
        if value is not None:
            return int(value)
    raise TfcError("lm-eval needs a BOS or EOS token to score a text from its start; neither the tokenizer nor the "
                   "model's config has one")


def evaluate(runner, tokenizer, config, max_length: int, label: str, start: int) -> dict:
    """{"task/metric": {"value", "higher_is_better"}} of every task in `config` (the recipe's task.lm_eval) for one
    model; `higher_is_better` as the harness declares it (None where it does not)."""
    if not available():
        raise UsageError(f"task.eval: lm-eval needs the harness: {HELP}")
    import lm_eval
    from lm_eval.tasks import TaskManager

    from .. import progress

    progress.info(f"lm-eval on the {label} model: {', '.join(config.tasks)}")
    include = [str(Path(p).expanduser()) for p in config.include_path] or None
    # off a terminal the harness's INFO lines and tqdm bars (carriage returns) would fill the log: its errors still
    # surface as exceptions below
    quiet = contextlib.redirect_stderr(io.StringIO()) if not progress.enabled() else contextlib.nullcontext()
    logging.getLogger("lm_eval").setLevel(logging.WARNING if progress.enabled() else logging.ERROR)
    try:
        with quiet:
            out = lm_eval.simple_evaluate(
                model=_lm_class()(runner, tokenizer, max_length, start), tasks=list(config.tasks),
                num_fewshot=config.num_fewshot, limit=config.limit, task_manager=TaskManager(include_path=include),
                random_seed=0, numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0, log_samples=False,
                bootstrap_iters=0)
    except Exception as err:  # the harness raises many kinds (missing task, no data offline): name it
        raise TfcError(f"lm-eval on the {label} model failed: {type(err).__name__}: "
                       f"{str(err).splitlines()[0] if str(err) else ''}") from err
    metrics = {}
    for task, values in out["results"].items():
        directions = out.get("higher_is_better", {}).get(task, {})
        for key, value in values.items():
            name, _, kind = key.partition(",")
            metric = name in directions if directions else not name.endswith("_stderr") and name != "sample_len"
            if metric and isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics[f"{task}/{name}" + (f",{kind}" if kind and kind != "none" else "")] = {
                    "value": float(value), "higher_is_better": directions.get(name)}
    return metrics


def worst_drop(baseline: dict, compressed: dict) -> tuple[str, float] | None:
    """(metric, drop) of the higher-is-better metric that fell most from baseline to compressed, or None."""
    drops = [(name, baseline[name]["value"] - compressed[name]["value"]) for name in baseline
             if baseline[name]["higher_is_better"] and name in compressed]
    return max(drops, key=lambda d: d[1]) if drops else None
