"""YAML loading that keeps line numbers, reports duplicate keys and refuses alias bombs.

Recipe errors must name the line, so mappings load as `LineDict` (a dict that knows the line of each key)
and sequences as `LineList` (knows the line of each item). A duplicate key is a problem collected beside the
others (the first value is kept), so a recipe's every problem is still listed at once. Merge keys (`<<: *base`)
follow YAML: the mapping's own keys override merged ones. Aliases are checked before anything is built: a
document whose aliases expand to more than `MAX_NODES` nodes (the "billion laughs" bomb: a few lines that
expand to gigabytes when printed or walked) or that refers to itself is refused.
"""
from __future__ import annotations

import yaml

from .errors import Problem

MAX_NODES = 100_000  # a real recipe has a few hundred


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


class AliasBomb(yaml.YAMLError):
    def __init__(self, line: int, message: str):
        self.problem = Problem(line, message)
        super().__init__(message)


class _Loader(yaml.SafeLoader):
    def __init__(self, stream):
        super().__init__(stream)
        self.problems: list[Problem] = []


def _scalar_key(node) -> object:
    return node.value if isinstance(node, yaml.ScalarNode) else id(node)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    own: dict = {}  # duplicates among the mapping's own keys; merged keys may be overridden
    own_nodes = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        own_nodes.add(id(key_node))
        key, line = _scalar_key(key_node), key_node.start_mark.line + 1
        if key in own:
            loader.problems.append(Problem(line, f"duplicate key '{key}' (first given on line {own[key]})"))
        else:
            own[key] = line
    loader.flatten_mapping(node)  # merged pairs come first, then the mapping's own
    out = LineDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    explicit_seen: set = set()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in explicit_seen:
            continue  # a duplicate (already reported): the first value stays
        if id(key_node) in own_nodes:
            explicit_seen.add(key)
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


def _check_expansion(root) -> None:
    """Count the nodes the document expands to (shared nodes counted each time they are used), without expanding."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise AliasBomb(node.start_mark.line + 1, "an alias refers to the node that contains it (a recursive recipe)")
        open_nodes.add(key)
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_NODES:
                raise AliasBomb(node.start_mark.line + 1, f"aliases here expand to more than {MAX_NODES:,} values; "
                                "a recipe is a few hundred")
        open_nodes.discard(key)
        sizes[key] = total
        return total

    size(root)


def load_yaml(text: str) -> tuple[object, list[Problem]]:
    """Parse YAML text into (data, duplicate-key problems); raises `yaml.YAMLError` (with `problem_mark`) or
    `AliasBomb`."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, []
        _check_expansion(node)
        return loader.construct_document(node), loader.problems
    finally:
        loader.dispose()


def yaml_error_problem(err: yaml.YAMLError) -> Problem:
    if isinstance(err, AliasBomb):
        return err.problem
    mark = getattr(err, "problem_mark", None)
    what = getattr(err, "problem", None) or str(err)
    return Problem(mark.line + 1 if mark else None, f"invalid YAML: {what}")
