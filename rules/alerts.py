"""Alert lifecycle with Prometheus/Alertmanager semantics, pure: the caller passes `now`.

Rules report *conditions* ("wrong for these labels since t"); the book turns them into
alerts, one per fingerprint (rule id + sorted labels), so a repeated condition is one alert:

    inactive -> pending -> firing -> resolved -> dropped after the retention
                   `-> cleared (gone before `for` elapsed: never fired, never notified)

- `for` counts from when the data says the condition began, not from when a tick saw it,
  so a 1 s tick does not add a second to every alert.
- A firing alert whose condition goes away keeps firing for `keep_firing_for`; if the
  condition comes back meanwhile nothing changes (no flapping notifications, ack kept).
- Inhibition and silences never change the lifecycle: they mark the alert (it stays
  visible) and a marked alert is not notifiable. Sources inhibit while pending too, so a
  line stop that is still forming already holds back its machines' alerts.
- A condition that comes only from backfilled data never starts an alert.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from linemon.model import Alert, AlertChange, AlertChanged, AlertState, Severity, Silence

_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


LiveAlert = Alert  # the engine's alerts are the model's; the name stays for readers


@dataclass(frozen=True, slots=True)
class Condition:
    rule_id: str  # "<kind>" or "<kind>:<configured id>", e.g. "threshold:oven-temp"
    labels: dict[str, str]
    severity: Severity
    since: datetime  # when the data says it became true
    for_s: float = 0.0
    keep_firing_for_s: float = 0.0
    value: float | None = None
    message: str = ""
    backfilled: bool = False  # began in data older than the input lag: never a live alert


@dataclass(frozen=True, slots=True)
class InhibitRule:
    """An active source alert marks target alerts that share the `equal` labels."""

    sources: frozenset[str]  # rule kinds (or full rule ids)
    targets: frozenset[str] | None  # None: any rule
    equal: tuple[str, ...]
    target_has: tuple[str, ...] = ()  # labels the target must carry, e.g. "machine"

    def inhibits(self, source: Alert, target: Alert) -> bool:
        if source is target or not _rule_in(source.rule_id, self.sources):
            return False
        if self.targets is not None and not _rule_in(target.rule_id, self.targets):
            return False
        if any(key not in target.labels for key in self.target_has):
            return False
        return all(
            key in source.labels and source.labels[key] == target.labels.get(key)
            for key in self.equal
        )


def fingerprint(rule_id: str, labels: dict[str, str]) -> str:
    """Stable across processes and restarts (unlike hash()): sha256 of rule and sorted labels."""
    text = json.dumps([rule_id, sorted(labels.items())], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def rule_kind(rule_id: str) -> str:
    return rule_id.split(":", 1)[0]


def snapshot(alert: LiveAlert) -> LiveAlert:
    return replace(alert, labels=dict(alert.labels))


@dataclass(slots=True)
class _Tracked:
    alert: LiveAlert
    for_s: float
    keep_firing_for_s: float
    keep_firing_since: datetime | None = None


class AlertBook:
    def __init__(self, inhibit_rules: list[InhibitRule], retention_s: float) -> None:
        self.inhibit_rules = inhibit_rules
        self.retention_s = retention_s
        self._active: dict[str, _Tracked] = {}
        self._recent: list[LiveAlert] = []
        self._silences: dict[str, Silence] = {}
        self._silence_seq = 0
        self.silence_prefix = "silence-"  # scaled out, each engine numbers its own

    # --- evaluation ------------------------------------------------------------------

    def next_due(self) -> datetime | None:
        """When the earliest pending alert's hold ends: evaluate then, not a tick later."""
        return min((t.alert.first_seen + timedelta(seconds=t.for_s)
                    for t in self._active.values() if t.alert.state is AlertState.PENDING),
                   default=None)

    def evaluate(self, conditions: list[Condition], now: datetime) -> list[AlertChanged]:
        current = _merge(conditions)
        lifecycle: dict[str, tuple[LiveAlert, AlertChange]] = {}
        for fp, cond in current.items():
            tracked = self._active.get(fp)
            if tracked is None:
                if cond.backfilled:
                    continue
                tracked = self._active[fp] = _start(fp, cond, now)
                lifecycle[fp] = (tracked.alert, AlertChange.PENDING)
            else:
                _refresh(tracked, cond, now)
        for fp, tracked in list(self._active.items()):
            alert = tracked.alert
            if fp in current:
                held = (now - alert.first_seen).total_seconds()
                if alert.state is AlertState.PENDING and held >= tracked.for_s:
                    alert.state, alert.fired_at = AlertState.FIRING, now
                    lifecycle[fp] = (alert, AlertChange.FIRING)
            elif alert.state is AlertState.PENDING:
                del self._active[fp]
                lifecycle[fp] = (alert, AlertChange.CLEARED)
            else:
                since = tracked.keep_firing_since = tracked.keep_firing_since or now
                if (now - since).total_seconds() < tracked.keep_firing_for_s:
                    continue
                del self._active[fp]
                alert.state, alert.resolved_at = AlertState.RESOLVED, now
                self._recent.append(alert)
                lifecycle[fp] = (alert, AlertChange.RESOLVED)
        changes = self._expire(now)
        marks = self._mark(now)
        for alert, change in lifecycle.values():
            changes.append(AlertChanged(snapshot(alert), change, now))
        for fp, alert, change in marks:
            if fp not in lifecycle:  # a lifecycle change already carries the new marks
                changes.append(AlertChanged(snapshot(alert), change, now))
        return changes

    def _expire(self, now: datetime) -> list[AlertChanged]:
        changes: list[AlertChanged] = []
        keep: list[LiveAlert] = []
        for alert in self._recent:
            assert alert.resolved_at is not None
            if (now - alert.resolved_at).total_seconds() >= self.retention_s:
                changes.append(AlertChanged(snapshot(alert), AlertChange.EXPIRED, now))
            else:
                keep.append(alert)
        self._recent = keep
        for sid, silence in list(self._silences.items()):
            if (now - silence.ends_at).total_seconds() >= self.retention_s:
                del self._silences[sid]
        return changes

    def _mark(self, now: datetime) -> list[tuple[str, LiveAlert, AlertChange]]:
        alerts = [t.alert for t in self._active.values()]
        silences = [s for s in self._silences.values() if s.active(now)]
        changes: list[tuple[str, LiveAlert, AlertChange]] = []
        for alert in alerts:
            inhibitor = next((source.fingerprint for rule in self.inhibit_rules
                              for source in alerts if rule.inhibits(source, alert)), None)
            silence = next((s.id for s in silences if s.matches(alert)), None)
            if inhibitor != alert.inhibited_by:
                change = AlertChange.INHIBITED if inhibitor else AlertChange.UNINHIBITED
                changes.append((alert.fingerprint, alert, change))
                alert.inhibited_by = inhibitor
            if silence != alert.silenced_by:
                change = AlertChange.SILENCED if silence else AlertChange.UNSILENCED
                changes.append((alert.fingerprint, alert, change))
                alert.silenced_by = silence
        return changes

    # --- people ----------------------------------------------------------------------

    def acknowledge(self, fp: str, by: str, now: datetime) -> AlertChanged | None:
        """Only a firing alert can be acknowledged; a second ack changes nothing."""
        tracked = self._active.get(fp)
        if tracked is None or tracked.alert.state is not AlertState.FIRING:
            return None
        alert = tracked.alert
        if alert.acknowledged_by is not None:
            return None
        alert.acknowledged_by, alert.acknowledged_at = by, now
        return AlertChanged(snapshot(alert), AlertChange.ACKNOWLEDGED, now)

    def add_silence(self, matchers: dict[str, str], starts: datetime, ends: datetime,
                    by: str, comment: str, silence_id: str | None = None) -> Silence:
        if not matchers:
            raise ValueError("a silence needs at least one matcher; it would silence everything")
        if starts.tzinfo is None or ends.tzinfo is None:
            raise ValueError("silence times must be timezone-aware (UTC)")
        if ends <= starts:
            raise ValueError("a silence must end after it starts")
        # Scaled out, the API names the silence so every engine it reaches keeps one id.
        if silence_id is None:
            self._silence_seq += 1
            silence_id = f"{self.silence_prefix}{self._silence_seq}"
        silence = Silence(silence_id, dict(matchers), starts, ends, by, comment)
        self._silences[silence.id] = silence
        return silence

    def expire_silence(self, silence_id: str, now: datetime) -> Silence | None:
        silence = self._silences.get(silence_id)
        if silence is None or silence.ends_at <= now:
            return silence
        ended = replace(silence, ends_at=max(now, silence.starts_at))
        self._silences[silence_id] = ended
        return ended

    # --- views -----------------------------------------------------------------------

    def silences(self, now: datetime) -> list[Silence]:
        """Silences that are active or still to come."""
        return [s for s in self._silences.values() if s.ends_at > now]

    def active(self) -> list[LiveAlert]:
        return [snapshot(t.alert) for t in self._active.values()]

    def recent(self) -> list[LiveAlert]:
        return [snapshot(a) for a in self._recent]

    def get(self, fp: str) -> LiveAlert | None:
        tracked = self._active.get(fp)
        return snapshot(tracked.alert) if tracked else None


def _merge(conditions: list[Condition]) -> dict[str, Condition]:
    """Deduplicate: one condition per fingerprint, the earliest start and the worst severity."""
    merged: dict[str, Condition] = {}
    for cond in conditions:
        fp = fingerprint(cond.rule_id, cond.labels)
        seen = merged.get(fp)
        if seen is None:
            merged[fp] = cond
            continue
        first, other = (seen, cond) if seen.since <= cond.since else (cond, seen)
        worst = max(seen.severity, cond.severity, key=_SEVERITY_RANK.__getitem__)
        merged[fp] = replace(first, severity=worst,
                             backfilled=seen.backfilled and cond.backfilled,
                             value=other.value if first.value is None else first.value)
    return merged


def _start(fp: str, cond: Condition, now: datetime) -> _Tracked:
    since = min(cond.since, now)  # a device clock ahead of ours must not delay `for`
    alert = LiveAlert(
        rule_id=cond.rule_id, labels=dict(cond.labels), fingerprint=fp,
        severity=cond.severity, state=AlertState.PENDING, first_seen=since, last_seen=now,
        value=cond.value, message=cond.message,
    )
    return _Tracked(alert, cond.for_s, cond.keep_firing_for_s)


def _refresh(tracked: _Tracked, cond: Condition, now: datetime) -> None:
    alert = tracked.alert
    alert.last_seen, alert.value, alert.message = now, cond.value, cond.message
    alert.severity = cond.severity
    tracked.keep_firing_since = None  # the condition is back: the hold starts over next time
    tracked.for_s, tracked.keep_firing_for_s = cond.for_s, cond.keep_firing_for_s


def _rule_in(rule_id: str, names: frozenset[str]) -> bool:
    return rule_id in names or rule_kind(rule_id) in names
