"""Scenario timeline: the scripted happenings, written as short sentences.

    at 00:10 press-1 down reason=17 for 4m
    at 00:30 reflow rejects 12% for 5m
    at 00:35 weld-1 slow 30% for 10m
    at 00:40 filler-1 changeover for 10m code=5
    at 00:50 pack-1 planned-stop for 15m reason=maintenance
    at 01:00 press-2 plc-restart            (also "restart", optional "for 10s")
    at 01:20 mqtt disconnect for 30s        (also "mqtt publisher disconnect for 30s")

Times are relative to the scenario start (`hh:mm` or `hh:mm:ss`, hours may exceed 24);
durations are `30s`, `4m`, `1h`, `1h30m` or a number of seconds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ACTIONS = ("down", "rejects", "slow", "plc-restart", "changeover", "planned-stop", "disconnect")
_NEEDS_FOR = {"down", "rejects", "slow", "changeover", "planned-stop", "disconnect"}
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


class TimelineError(ValueError):
    """A timeline entry that cannot be understood; the message names the entry."""

    def __init__(self, index: int, text: object, detail: str) -> None:
        super().__init__(f"timeline[{index}] {text!r}: {detail}")
        self.index = index
        self.text = text
        self.detail = detail


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One scripted happening, `at_s` seconds after the scenario start."""

    index: int
    text: str
    at_s: float
    target: str  # a machine id, or "mqtt"
    action: str  # one of ACTIONS
    for_s: float | None = None
    reason: int | None = None  # fault / planned-stop reason, changeover code
    percent: float | None = None  # rejects / slow


def parse_duration(value: object, what: str = "duration") -> float:
    """`30s`, `4m`, `1h`, `1h30m`, `2.5m` or a plain number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a duration like 30s, 4m or 1h, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{what}: must not be negative, got {value}")
        return float(value)
    text = str(value).strip().lower()
    match = _DURATION.match(text)
    if not text or match is None or not any(match.groups()):
        raise ValueError(f"{what}: expected a duration like 30s, 4m or 1h, got {value!r}")
    h, m, s = (float(g) if g else 0.0 for g in match.groups())
    return h * 3600 + m * 60 + s


def parse_offset(text: str) -> float:
    """`hh:mm` or `hh:mm:ss` relative to the scenario start -> seconds."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
        raise ValueError(f"expected a time like 00:10 or 01:20:30, got {text!r}")
    numbers = [int(p) for p in parts] + [0] * (3 - len(parts))
    if numbers[1] >= 60 or numbers[2] >= 60:
        raise ValueError(f"minutes and seconds must be below 60 in {text!r}")
    return numbers[0] * 3600.0 + numbers[1] * 60.0 + numbers[2]


def parse_entry(
    index: int,
    text: str,
    machines: Sequence[str],
    reasons: Mapping[int, str],
) -> TimelineEntry:
    """Parse one sentence; raise TimelineError naming the entry on any problem."""
    try:
        return _parse(index, text, machines, reasons)
    except (ValueError, IndexError) as err:
        raise TimelineError(index, text, str(err)) from None


def parse_timeline(
    entries: Sequence[object], machines: Sequence[str], reasons: Mapping[int, str]
) -> tuple[TimelineEntry, ...]:
    parsed = []
    for i, raw in enumerate(entries):
        if not isinstance(raw, str):
            raise TimelineError(i, raw, "expected a string like 'at 00:10 press-1 down ...'")
        parsed.append(parse_entry(i, raw, machines, reasons))
    return tuple(sorted(parsed, key=lambda e: (e.at_s, e.index)))


def resolve_reason(value: str, reasons: Mapping[int, str]) -> int:
    """A reason given as a code (`17`) or as its text (`jam`, `tool-break`) -> code."""
    if value.isdigit():
        return int(value)
    wanted = value.replace("-", " ").replace("_", " ").lower()
    for code, text in reasons.items():
        if text.lower() == wanted:
            return code
    known = ", ".join(f"{c}={t!r}" for c, t in sorted(reasons.items())) or "none"
    raise ValueError(f"unknown reason {value!r} (known: {known})")


def _parse(index: int, text: str, machines: Sequence[str], reasons: Mapping[int, str]):
    words = text.split()
    if len(words) < 3 or words[0].lower() != "at":
        raise ValueError("expected 'at <hh:mm[:ss]> <machine|mqtt> <action> ...'")
    at_s = parse_offset(words[1])
    target = words[2]
    rest = [w.lower() for w in words[3:]]
    if target.lower() == "mqtt":
        target = "mqtt"
        if rest[:1] == ["publisher"]:
            rest = rest[1:]
        if rest[:1] != ["disconnect"]:
            raise ValueError("the only mqtt action is 'disconnect for <duration>'")
    elif target not in machines:
        raise ValueError(f"unknown machine {target!r} (known: {', '.join(machines)})")
    if not rest:
        raise ValueError(f"missing action (one of: {', '.join(ACTIONS)})")
    action = "plc-restart" if rest[0] == "restart" else rest[0]
    if action not in ACTIONS or (action == "disconnect") != (target == "mqtt"):
        raise ValueError(f"unknown action {rest[0]!r} (one of: {', '.join(ACTIONS[:-1])})")
    for_s: float | None = None
    reason: int | None = None
    percent: float | None = None
    args = rest[1:]
    i = 0
    while i < len(args):
        word = args[i]
        if word == "for":
            if i + 1 >= len(args):
                raise ValueError("'for' needs a duration, e.g. 'for 4m'")
            for_s = parse_duration(args[i + 1])
            if for_s <= 0:
                raise ValueError("duration must be positive")
            i += 2
            continue
        if word.endswith("%") and action in ("rejects", "slow"):
            percent = float(word[:-1])
            if not 0 <= percent <= (100 if action == "rejects" else 1000):
                raise ValueError(f"percentage out of range: {word}")
        elif "=" in word and word.split("=", 1)[0] in ("reason", "code"):
            reason = resolve_reason(word.split("=", 1)[1], reasons)
        else:
            raise ValueError(f"unexpected {word!r}")
        i += 1
    if action in _NEEDS_FOR and for_s is None:
        raise ValueError(f"'{action}' needs 'for <duration>'")
    if action in ("rejects", "slow") and percent is None:
        raise ValueError(f"'{action}' needs a percentage, e.g. '{action} 12%'")
    if action == "down" and reason is None:
        raise ValueError("'down' needs 'reason=<code or name>'")
    if reason is not None and reason not in reasons and action == "down":
        raise ValueError(f"reason {reason} is not in the scenario's reasons table")
    return TimelineEntry(index, text, at_s, target, action, for_s, reason, percent)
