"""A GGUF model file -> a plain HF folder (config, fp32 safetensors, tokenizer), converted once and cached.

transformers reads GGUF with `gguf_file=` (needs the `gguf` package) and dequantizes the weights to float; after
that the model is an ordinary checkpoint, so every tfc path (eval, bench, quantize) treats it like any HF folder.
The fp32 weights are the GGUF's quantized values, dequantized: that is the baseline tfc measures against.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from . import progress
from .atomic import as_umask_allows
from .errors import TfcError


def converted_folder(gguf_path: Path, folder: Path) -> Path:
    """`folder` holding the HF conversion of `gguf_path`; converts (atomically) if it is not there yet."""
    if (folder / "config.json").is_file():
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .hf_classes import quiet_transformers

    quiet_transformers()
    progress.info(f"converting {gguf_path.name} to a Hugging Face folder (once) ...")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    as_umask_allows(tmp)  # readable by the other users of a shared cache
    try:
        kwargs = {"gguf_file": gguf_path.name}
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
        loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, **kwargs)
        # The weights are already dequantized; a fresh model without the GGUF quantization config saves normally.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(loaded.state_dict())
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except ImportError as err:
        raise TfcError(f"converting {gguf_path.name} needs the 'gguf' package ({err})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
