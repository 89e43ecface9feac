"""tfc: compress transformer models from a YAML recipe, and measure what it did."""
__version__ = "0.1.0"


def load(path):
    """Load a tfc checkpoint (safetensors or ONNX) exactly as saved; see tfc_cli.checkpoint.load."""
    from .checkpoint import load as _load

    return _load(path)


def compress(recipe, output=None, **options):
    """Run a recipe (a path, YAML text or a dict) as `tfc compress` does; see tfc_cli.api.compress."""
    from .api import compress as _compress

    return _compress(recipe, output, **options)


__all__ = ["__version__", "compress", "load"]
