"""YAML loading that keeps line numbers and refuses duplicate keys.

Recipe errors must name the line, so mappings load as `LineDict` (a dict that knows the line of each key)
and sequences as `LineList` (knows the line of each item).
"""
from __future__ import annotations

import yaml

from .errors import Problem


class LineDict(dict):
    line: int = 0
    key_lines: dict

    def line_of(self, key) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list):
    line: int = 0
    item_lines: list

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


class DuplicateKey(yaml.YAMLError):
    def __init__(self, key, line: int, first_line: int):
        self.problem = Problem(line, f"duplicate key '{key}' (first given on line {first_line})")
        super().__init__(self.problem.message)


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in out.key_lines:
            raise DuplicateKey(key, line, out.key_lines[key])
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = line
    return out


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml(text: str):
    """Parse YAML text; raises `yaml.YAMLError` (with `problem_mark`) or `DuplicateKey`."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def yaml_error_problem(err: yaml.YAMLError) -> Problem:
    if isinstance(err, DuplicateKey):
        return err.problem
    mark = getattr(err, "problem_mark", None)
    what = getattr(err, "problem", None) or str(err)
    return Problem(mark.line + 1 if mark else None, f"invalid YAML: {what}")
