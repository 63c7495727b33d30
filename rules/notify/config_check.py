"""References inside `notifications:` and to the plant, checked once the whole file is read.

Returns (path, message) pairs for the config loader, which adds line numbers. Like
config.py it imports nothing of linemon.config (that module calls this one).
"""

from __future__ import annotations

from rules.notify.config import (
    ROSTER_PREFIX,
    NotificationsConfig,
    Target,
)

Problem = tuple[str, str]


def cross_check_notifications(n: NotificationsConfig, machines: dict[str, str],
                              shifts: set[str]) -> list[Problem]:
    """`machines` maps machine id -> line id; `shifts` are the calendar's shift names."""
    problems: list[Problem] = []
    at = "notifications"
    lines = set(machines.values())
    names = [c.name for c in n.channels]
    for i, name in enumerate(names):
        if name in names[:i]:
            problems.append((f"{at}.channels[{i}].name", f"duplicate channel name {name!r}"))
    ids = [p.id for p in n.people]
    for i, pid in enumerate(ids):
        if pid in ids[:i]:
            problems.append((f"{at}.people[{i}].id", f"duplicate person id {pid!r}"))
    people = set(ids)
    for rid, roster in n.rosters.items():
        for shift, members in roster.shifts.items():
            if shift not in shifts:
                problems.append((f"{at}.rosters.{rid}.shifts.{shift}",
                                 f"no shift {shift!r} in the calendar ({_known(shifts)})"))
            problems += _people(f"{at}.rosters.{rid}.shifts.{shift}", members, people)
        problems += _people(f"{at}.rosters.{rid}.otherwise", roster.otherwise, people)
    for name, policy in n.escalation.items():
        for li, level in enumerate(policy.levels):
            for ti, target in enumerate(level.notify):
                problems += _target(n, f"{at}.escalation.{name}.levels[{li}].notify[{ti}]", target)
    for ri, route in enumerate(n.routes):
        where = f"{at}.routes[{ri}]"
        if route.escalation is not None and route.escalation not in n.escalation:
            problems.append((f"{where}.escalation",
                             f"no escalation policy {route.escalation!r} ({_known(n.escalation)})"))
        for ti, target in enumerate(route.notify):
            problems += _target(n, f"{where}.notify[{ti}]", target)
        m = route.match
        for i, line in enumerate(m.lines or []):
            if line not in lines:
                problems.append((f"{where}.match.lines[{i}]", f"unknown line {line!r}"))
        for i, machine in enumerate(m.machines or []):
            if machine not in machines:
                problems.append((f"{where}.match.machines[{i}]", f"unknown machine {machine!r}"))
        for i, shift in enumerate(m.shifts or []):
            if shift not in shifts:
                problems.append((f"{where}.match.shifts[{i}]",
                                 f"no shift {shift!r} in the calendar ({_known(shifts)})"))
    for qi, quiet in enumerate(n.quiet_hours):
        for i, line in enumerate(quiet.lines or []):
            if line not in lines:
                problems.append((f"{at}.quiet_hours[{qi}].lines[{i}]", f"unknown line {line!r}"))
    return problems


def _target(n: NotificationsConfig, where: str, target: Target) -> list[Problem]:
    channel = n.channel(target.channel)
    if channel is None:
        return [(f"{where}.channel",
                 f"unknown channel {target.channel!r} ({_known(c.name for c in n.channels)})")]
    if channel.kind in ("webhook", "mqtt"):
        if target.to:
            return [(f"{where}.to", f"a {channel.kind} channel has its own destination; "
                     "it takes no people")]
        return []
    if not target.to:
        default = channel.topic if channel.kind == "ntfy" else channel.to
        if not default:
            what = "a `topic`" if channel.kind == "ntfy" else "`to` addresses"
            return [(f"{where}.to", f"name people, or give channel {channel.name!r} {what}")]
        return []
    problems: list[Problem] = []
    people = {p.id: p for p in n.people}
    for i, name in enumerate(target.to):
        if name.startswith(ROSTER_PREFIX):
            roster = name.removeprefix(ROSTER_PREFIX)
            if roster not in n.rosters:
                problems.append((f"{where}.to[{i}]",
                                 f"no roster {roster!r} ({_known(n.rosters)})"))
                continue
            r = n.rosters[roster]
            members = {pid for ms in r.shifts.values() for pid in ms} | set(r.otherwise)
        else:
            members = {name}
        for pid in sorted(members):
            person = people.get(pid)
            if person is None:
                if not name.startswith(ROSTER_PREFIX):
                    problems.append((f"{where}.to[{i}]",
                                     f"unknown person {pid!r}; or did you mean 'roster:{pid}'?"))
                continue  # the roster's own check names it
            if channel.kind == "ntfy" and not person.ntfy_topic:
                problems.append((f"{where}.to[{i}]", f"{pid!r} has no ntfy_topic"))
            if channel.kind == "email" and not person.email:
                problems.append((f"{where}.to[{i}]", f"{pid!r} has no email"))
    return problems


def _people(where: str, members: list[str], people: set[str]) -> list[Problem]:
    return [(f"{where}[{i}]", f"unknown person {pid!r}")
            for i, pid in enumerate(members) if pid not in people]


def _known(names: object) -> str:
    found = sorted(names)  # type: ignore[call-overload]
    return ", ".join(found) if found else "none defined"
