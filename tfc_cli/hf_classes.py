"""Which transformers class a config loads with, and keeping transformers' own output quiet."""
from __future__ import annotations


def quiet_transformers() -> None:
    """transformers and datasets print load reports, advice and bars; tfc reports what matters itself."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()


def is_causal_lm(config) -> bool:
    return any(a.endswith("ForCausalLM") for a in (getattr(config, "architectures", None) or ()))


def model_class(config):
    """The transformers auto class that loads this config's model with its head."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    return AutoModelForCausalLM if is_causal_lm(config) else AutoModelForSequenceClassification
