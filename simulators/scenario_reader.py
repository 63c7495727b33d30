"""Strict reading of a scenario mapping: every error names the exact path (and YAML line)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import time
from typing import Any

import yaml

from simulators.timeline import parse_duration

_MISSING: Any = object()


class ScenarioError(ValueError):
    """A scenario that cannot be used, e.g. `demo.yaml:41: lines[0].machines[2].mtbf: ...`."""


def yaml_lines(text: str) -> dict[str, int]:
    """Map each path in a YAML document (`lines[0].machines[2].mtbf`) to its 1-based line."""
    marks: dict[str, int] = {}

    def walk(node: yaml.Node, path: str) -> None:
        marks.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = f"{path}.{key.value}" if path else str(key.value)
                marks[child] = key.start_mark.line + 1
                walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f"{path}[{i}]")

    root = yaml.compose(text)
    if root is not None:
        walk(root, "")
    return marks


class Section:
    """One mapping of the scenario; `get` converts and records keys, `done` rejects the rest."""

    def __init__(self, data: object, path: str, ctx: ReadContext) -> None:
        self.path = path
        self.ctx = ctx
        if not isinstance(data, Mapping):
            raise ctx.error(path, f"expected a mapping, got {type(data).__name__}")
        self.data = data
        self._used: set[str] = set()

    def child_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, convert: Callable[[Any], Any], default: Any = _MISSING) -> Any:
        self._used.add(key)
        path = self.child_path(key)
        if key not in self.data or self.data[key] is None:
            if default is _MISSING:
                raise self.ctx.error(path, "is required")
            return default
        try:
            return convert(self.data[key])
        except ScenarioError:
            raise
        except (ValueError, TypeError) as err:
            raise self.ctx.error(path, str(err)) from None

    def section(self, key: str) -> Section | None:
        self._used.add(key)
        if self.data.get(key) is None:
            return None
        return Section(self.data[key], self.child_path(key), self.ctx)

    def items(self, key: str) -> list[tuple[str, Any]]:
        """A list value as (path, item) pairs."""
        self._used.add(key)
        value = self.data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.ctx.error(self.child_path(key), "expected a list")
        return [(f"{self.child_path(key)}[{i}]", item) for i, item in enumerate(value)]

    def done(self) -> None:
        unknown = sorted(str(k) for k in self.data if k not in self._used)
        if unknown:
            path = self.child_path(unknown[0])
            raise self.ctx.error(path, f"unknown key {unknown[0]!r}")


class ReadContext:
    def __init__(self, source: str | None, marks: Mapping[str, int]) -> None:
        self.source = source
        self.marks = marks

    def error(self, path: str, message: str) -> ScenarioError:
        line = self.line_of(path)
        where = self.source or "scenario"
        if line is not None:
            where = f"{where}:{line}"
        return ScenarioError(f"{where}: {path or '<root>'}: {message}")

    def line_of(self, path: str) -> int | None:
        """The line of `path`, or of its closest parent (a missing key has no line)."""
        while path:
            if path in self.marks:
                return self.marks[path]
            parent = re.sub(r"(\.[^.\[\]]*|\[\d+\])$", "", path)
            path = "" if parent == path else parent
        return None


# -- converters ---------------------------------------------------------------


def as_str(value: Any) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool) or str(value).strip() == "":
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return str(value)


def as_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def as_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


def fraction(value: Any) -> float:
    """`0.02`, `2%`."""
    if isinstance(value, str) and value.strip().endswith("%"):
        number = float(value.strip()[:-1]) / 100
    else:
        number = as_number(value)
    if not 0 <= number <= 1:
        raise ValueError(f"expected a fraction between 0 and 1 (or 0%..100%), got {value!r}")
    return number


def positive_duration(value: Any) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"expected a positive duration, got {value!r}")
    return seconds


def clock_time(value: Any) -> time:
    """`"06:00"` (YAML may also hand us 360 minutes for an unquoted 06:00 in YAML 1.1)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = f"{value // 60:02d}:{value % 60:02d}"  # YAML 1.1 sexagesimal: 06:00 -> 360
    if not isinstance(value, str):
        raise ValueError(f"expected a time of day like '06:00', got {value!r}")
    parts = value.strip().split(":")
    try:
        numbers = [int(p) for p in parts]
        if len(numbers) not in (2, 3):
            raise ValueError
        if numbers[0] == 24 and all(n == 0 for n in numbers[1:]):
            return time(0, 0)
        return time(*numbers)
    except ValueError:
        raise ValueError(f"expected a time of day like '06:00', got {value!r}") from None


def weighted_codes(value: Any) -> tuple[tuple[int, float], ...]:
    """`{17: 3, 23: 1}` (code: weight) or `[17, 23]` (equal weights)."""
    if isinstance(value, list):
        pairs = [(as_int(code), 1.0) for code in value]
    elif isinstance(value, Mapping):
        pairs = [(as_int(code), as_number(weight)) for code, weight in value.items()]
    else:
        raise ValueError(f"expected a list of codes or a mapping code: weight, got {value!r}")
    if not pairs or any(w <= 0 for _, w in pairs):
        raise ValueError("expected at least one code, with positive weights")
    return tuple(pairs)
