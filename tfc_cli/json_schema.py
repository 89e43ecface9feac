"""The recipe as a JSON Schema, generated from the same config dataclasses that validate it, for editor completion
(`tfc schema > tfc-recipe.schema.json`; in VS Code's YAML extension, `# yaml-language-server: $schema=...`).

The schema helps an editor; `tfc validate` stays the judge (stage order, model-dependent limits, files)."""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Literal

from . import __version__
from .schema import REQUIRED

_SIMPLE = {bool: "boolean", int: "integer", float: "number", str: "string", dict: "object", list: "array"}


def _type_schema(tp) -> dict:
    origin = typing.get_origin(tp)
    if tp is Any:
        return {}
    if origin is Literal:
        return {"enum": list(typing.get_args(tp))}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_type_schema(a) for a in typing.get_args(tp)]}
    if tp is type(None):
        return {"type": "null"}
    if tp is float:  # YAML 1.1 reads 5e-5 (no dot) as text; tfc takes it as the number it means
        return {"anyOf": [{"type": "number"}, {"type": "string", "pattern": "^[-+]?[0-9]*\\.?[0-9]+[eE][-+]?[0-9]+$"}]}
    if dataclasses.is_dataclass(tp):
        return config_schema(tp)
    return {"type": _SIMPLE[origin or tp]} if (origin or tp) in _SIMPLE else {}


def _json_default(value) -> tuple[bool, Any]:
    if dataclasses.is_dataclass(value):
        return False, None
    try:
        json.dumps(value)
    except TypeError:
        return False, None
    return True, value


def config_schema(cls, skip: tuple[str, ...] = ()) -> dict:
    """An object schema of a config dataclass: every field with its type, help, default and range."""
    hints = typing.get_type_hints(cls)
    properties, required = {}, []
    for f in dataclasses.fields(cls):
        if not f.init or f.name in skip:
            continue
        prop = _type_schema(hints[f.name])
        if f.metadata.get("help"):
            prop["description"] = f.metadata["help"]
        default = f.default if f.default is not REQUIRED else f.default_factory() if f.default_factory is not REQUIRED else REQUIRED
        if default is REQUIRED:
            required.append(f.name)
        else:
            ok, value = _json_default(default)
            if ok:
                prop["default"] = value
        lo, hi = f.metadata.get("min"), f.metadata.get("max")
        if lo is not None:
            prop["exclusiveMinimum" if f.metadata.get("min_exclusive") else "minimum"] = lo
        if hi is not None:
            prop["maximum"] = hi
        properties[f.name] = prop
    return {"type": "object", "properties": properties, "additionalProperties": False} | (
        {"required": required} if required else {})


def _stage_schemas() -> list[dict]:
    from .stages import STAGES

    schemas = []
    for name, cls in sorted(STAGES.items()):
        variants = cls.variants.items() if cls.variants else [(None, cls)]
        for choice, variant in variants:
            schema = config_schema(variant.Config, skip=(cls.variant_key,) if choice else ())
            schema["properties"] = {"type": {"const": name, "description": cls.help}} | schema["properties"]
            schema["required"] = ["type"] + schema.get("required", [])
            if choice:
                schema["properties"][cls.variant_key] = {"const": choice, "description": variant.help}
                if choice != cls.default_variant:
                    schema["required"].append(cls.variant_key)
            schema["title"] = f"{name} ({cls.variant_key}: {choice})" if choice else name
            schemas.append(schema)
    return schemas


def recipe_schema() -> dict:
    from .recipe import _Top

    top = config_schema(_Top)
    top["properties"]["stages"] = {"type": "array", "minItems": 1, "description": "the compression stages, in order",
                                   "items": {"anyOf": _stage_schemas()}}
    return {"$schema": "http://json-schema.org/draft-07/schema#", "$id": f"https://tfc/recipe-{__version__}.json",
            "title": "tfc recipe"} | top
