"""AlertEngine: the alerting half of the engine, behind one facade.

It is fed what the trackers emit (state changes, parts) and the raw samples (process
values and freshness), and on every tick turns all rules' conditions into alert lifecycle
changes. Like the trackers it never reads the wall clock: every `now` comes from the caller.

Replays and backfill never fire a live alert: an input stamped more than
`max_input_lag_s` before the newest `now` seen is kept out of the rules that start
alerts. A late state change still updates the machine's state (it is the newest we know),
but a stop that begins in late data starts no alert.
"""

from __future__ import annotations

from datetime import datetime

from linemon.model import (
    DowntimeEnded,
    DowntimeStarted,
    Event,
    PartsProduced,
    Sample,
    StateChanged,
)
from rules.alerts import AlertBook, AlertChanged, Condition, InhibitRule, LiveAlert, Silence
from rules.defects import DefectSpikeDetector
from rules.line_stop import StopWatch
from rules.rules_config import RulesConfig
from rules.spc import IndividualsChart, RejectFractionChart, build_chart
from rules.thresholds import StaleWatch, ThresholdWatch, numeric

# A down machine explains its own odd values and rejects; a stopped line explains every
# alert of its machines (their own stop alerts included: one push for the line).
MACHINE_DOWN = InhibitRule(
    sources=frozenset({"machine_stopped"}),
    targets=frozenset({"defect_spike", "threshold", "spc"}),
    equal=("machine",),
)
LINE_STOPPED = InhibitRule(
    sources=frozenset({"line_stopped"}), targets=None, equal=("line",), target_has=("machine",)
)


class AlertEngine:
    def __init__(self, rules: RulesConfig, machines: dict[str, str]) -> None:
        """`machines` maps machine id -> line id."""
        self.rules = rules
        self.machines = dict(machines)
        self.stops = StopWatch(rules.line_stop, rules.machine_stop, self.machines)
        spike = rules.defect_spike
        self.spikes = {
            mid: DefectSpikeDetector(spike) for mid in self.machines
            if spike.enabled and (spike.machines is None or mid in spike.machines)
        }
        self.thresholds: dict[tuple[str, str], list[ThresholdWatch]] = {}
        for rule in rules.thresholds:
            watch = ThresholdWatch(rule, self.machines.get(rule.machine, ""))
            self.thresholds.setdefault((rule.machine, rule.signal), []).append(watch)
        self.stale = StaleWatch(rules.stale, self.machines)
        self.process_charts: dict[tuple[str, str], list[IndividualsChart]] = {}
        self.reject_charts: dict[str, list[RejectFractionChart]] = {}
        for chart_config in rules.spc:
            chart = build_chart(chart_config)
            if isinstance(chart, IndividualsChart):
                key = (chart_config.machine, chart_config.signal or "")
                self.process_charts.setdefault(key, []).append(chart)
            else:
                self.reject_charts.setdefault(chart_config.machine, []).append(chart)
        # The (machine, signal) pairs on_sample passes on to a threshold or a chart.
        self._watched = frozenset(self.thresholds) | frozenset(self.process_charts)
        self.book = AlertBook([MACHINE_DOWN, LINE_STOPPED], rules.resolved_retention_s)
        self._now: datetime | None = None

    # --- inputs ------------------------------------------------------------------------

    def on_event(self, event: Event, now: datetime | None = None) -> None:
        """Tracker events. Pass `now` when known; else the newest `now` seen judges lateness."""
        if now is not None:
            self._advance(now)
        if isinstance(event, StateChanged):
            self.stops.on_state(event, backfilled=self._late(event.at))
        elif isinstance(event, PartsProduced):
            if self._late(event.at):
                return
            detector = self.spikes.get(event.machine)
            if detector is not None:
                detector.add(event.at, event.good, event.reject)
            for chart in self.reject_charts.get(event.machine, ()):
                chart.add_parts(event.at, event.good, event.reject)
        elif isinstance(event, DowntimeStarted | DowntimeEnded):
            pass  # the state changes around a stop already tell the stop watch everything

    def on_sample(self, sample: Sample, now: datetime) -> None:
        if now is not self._now:  # the same `now` again (a batch shares one) advances nothing
            self._advance(now)
        self.stale.seen(sample)
        key = (sample.machine, sample.signal)
        if key not in self._watched:
            return  # no rule watches or plots this signal: most samples end here
        if self._late(sample.source_ts):
            return
        value = numeric(sample)
        if value is None:
            return
        for watch in self.thresholds.get(key, ()):
            watch.on_value(sample.source_ts, value)
        for chart in self.process_charts.get(key, ()):
            chart.add(sample.source_ts, value)

    def on_tick(self, now: datetime) -> list[AlertChanged]:
        self._advance(now)
        conditions = self.stops.conditions()
        conditions += self._spike_conditions(now)
        conditions += [c for ws in self.thresholds.values() for w in ws
                       if (c := w.condition()) is not None]
        conditions += self.stale.conditions(now)
        conditions += self._spc_conditions()
        return self.book.evaluate(conditions, now)

    def next_due(self) -> datetime | None:
        """The next moment a pending alert may fire (None: nothing pending)."""
        return self.book.next_due()

    # --- people ------------------------------------------------------------------------

    def acknowledge(self, fingerprint: str, by: str, now: datetime) -> AlertChanged | None:
        return self.book.acknowledge(fingerprint, by, now)

    def silence(self, matchers: dict[str, str], starts: datetime, ends: datetime, by: str,
                comment: str, silence_id: str | None = None) -> Silence:
        """Matchers are label equalities; `rule` matches a rule id or kind. Applied next tick."""
        return self.book.add_silence(matchers, starts, ends, by, comment, silence_id)

    def maintenance(self, *, line: str | None = None, machine: str | None = None,
                    starts: datetime, ends: datetime, by: str, comment: str) -> Silence:
        """A maintenance window: a silence on one line or one machine for a period."""
        if (line is None) == (machine is None):
            raise ValueError("a maintenance window covers one line or one machine")
        matchers = {"line": line} if line is not None else {"machine": str(machine)}
        return self.book.add_silence(matchers, starts, ends, by, comment)

    def expire_silence(self, silence_id: str, now: datetime) -> Silence | None:
        return self.book.expire_silence(silence_id, now)

    # --- views -------------------------------------------------------------------------

    def active(self) -> list[LiveAlert]:
        """Pending and firing alerts, inhibited and silenced ones included (and marked)."""
        return self.book.active()

    def recent(self) -> list[LiveAlert]:
        """Resolved alerts still within the retention."""
        return self.book.recent()

    def silences(self, now: datetime) -> list[Silence]:
        return self.book.silences(now)

    # --- internals ---------------------------------------------------------------------

    def _advance(self, now: datetime) -> None:
        if self._now is None or now > self._now:
            self._now = now
        self.stale.start(now)

    def _late(self, at: datetime) -> bool:
        if self._now is None:
            return False
        return (self._now - at).total_seconds() > self.rules.max_input_lag_s

    def _spike_conditions(self, now: datetime) -> list[Condition]:
        c = self.rules.defect_spike
        found: list[Condition] = []
        for mid, detector in self.spikes.items():
            verdict = detector.evaluate(now)
            if not verdict.spiking or detector.since is None:
                continue
            found.append(Condition(
                rule_id="defect_spike",
                labels={"line": self.machines[mid], "machine": mid},
                severity=c.severity,
                since=detector.since,
                for_s=c.for_s,
                keep_firing_for_s=c.keep_firing_for_s,
                value=verdict.window.rate if verdict.window else None,
                message=f"{mid} reject spike: {verdict.why}",
            ))
        return found

    def _spc_conditions(self) -> list[Condition]:
        found: list[Condition] = []
        charts = [*(c for cs in self.process_charts.values() for c in cs),
                  *(c for cs in self.reject_charts.values() for c in cs)]
        for chart in charts:
            point, cfg = chart.last, chart.config
            if point is None or chart.violating_since is None:
                continue
            what = cfg.signal or "reject fraction"
            found.append(Condition(
                rule_id=f"spc:{cfg.id}",
                labels={"line": self.machines.get(cfg.machine, ""), "machine": cfg.machine,
                        "chart": cfg.id},
                severity=cfg.severity,
                since=chart.violating_since,
                for_s=cfg.for_s,
                keep_firing_for_s=cfg.keep_firing_for_s,
                value=point.value,
                message=f"{cfg.machine} {what} out of control: {'; '.join(point.violations)}",
            ))
        return found
