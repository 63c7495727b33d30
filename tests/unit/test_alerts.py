"""Alert lifecycle, inhibition, silences and the AlertEngine facade: explicit times, no clock."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linemon.model import (
    AlertState,
    MachineState,
    PartsProduced,
    Severity,
    StateChanged,
)
from rules.alerting import AlertEngine
from rules.alerts import AlertBook, AlertChange, Condition, fingerprint
from rules.engine import Engine
from rules.rules_config import RulesConfig
from tests.unit.plant import T0, machine, plant, sample

# These tests are about windows and the alert lifecycle, so they switch off the two gates
# that keep real plants quiet (tested on their own below): the 30 s wait before a stop
# pages anyone, and the binomial significance test on reject counts.
_MECH = {"machine_stop": {"after_s": 0}, "defect_spike": {"significance": 1.0}}
MECHANICS = RulesConfig.model_validate(_MECH)


def t(seconds: float):
    return T0 + timedelta(seconds=seconds)


def cond(since: float = 0, *, rule: str = "threshold:oven", for_s: float = 0,
         keep: float = 0, backfilled: bool = False, **labels: str) -> Condition:
    return Condition(rule, labels or {"line": "l1", "machine": "m1"}, Severity.WARNING,
                     t(since), for_s, keep, 1.0, "oven too hot", backfilled)


def kinds(changes) -> list[str]:
    return [str(c.change) for c in changes]


# --- lifecycle --------------------------------------------------------------------------


@pytest.mark.parametrize(("ticks", "expected"), [
    # (tick time, condition present?) -> changes at each tick, for `for` = 30 s from t=0
    ([(10, True), (29.9, True), (30, True), (40, True)], [["pending"], [], ["firing"], []]),
    ([(10, True), (20, False)], [["pending"], ["cleared"]]),  # gone before `for`: never fired
    ([(10, True), (31, True), (32, False)], [["pending"], ["firing"], ["resolved"]]),
    ([(45, True)], [["firing"]]),  # first seen after `for` already passed: fires at once
])
def test_pending_fires_after_for_counted_from_the_data(ticks, expected) -> None:
    book = AlertBook([], retention_s=600)
    got = [kinds(book.evaluate([cond(0, for_s=30)] if on else [], t(at))) for at, on in ticks]
    assert got == expected


def test_firing_alert_keeps_its_first_seen_and_fired_at() -> None:
    book = AlertBook([], retention_s=600)
    book.evaluate([cond(3, for_s=30)], t(4))
    [change] = book.evaluate([cond(3, for_s=30)], t(33.5))
    assert change.alert.first_seen == t(3) and change.alert.fired_at == t(33.5)
    assert change.alert.notifiable


def test_flapping_within_keep_firing_for_is_one_alert_and_no_notifications() -> None:
    book = AlertBook([], retention_s=600)
    steps = [(0, True), (10, False), (15, True), (20, False), (29, False), (30, False)]
    got = [kinds(book.evaluate([cond(0, keep=10)] if on else [], t(at))) for at, on in steps]
    # the hold restarts when the condition comes back: resolved 10 s after it last went away
    assert got == [["firing"], [], [], [], [], ["resolved"]]
    [resolved] = book.recent()
    assert resolved.resolved_at == t(30) and resolved.state is AlertState.RESOLVED


def test_resolved_alert_is_kept_for_the_retention_then_dropped() -> None:
    book = AlertBook([], retention_s=300)
    book.evaluate([cond(0)], t(0))
    assert kinds(book.evaluate([], t(5))) == ["resolved"]
    assert [a.state for a in book.recent()] == [AlertState.RESOLVED]
    assert book.evaluate([], t(304)) == []
    assert kinds(book.evaluate([], t(305))) == ["expired"]
    assert book.recent() == []


def test_a_new_episode_after_resolution_is_a_new_alert_with_the_same_fingerprint() -> None:
    book = AlertBook([], retention_s=300)
    book.evaluate([cond(0)], t(0))
    book.evaluate([], t(5))
    [again] = book.evaluate([cond(10)], t(10))
    assert again.change is AlertChange.FIRING and again.alert.first_seen == t(10)
    assert again.alert.fingerprint == book.recent()[0].fingerprint


def test_duplicate_conditions_are_one_alert_by_fingerprint() -> None:
    book = AlertBook([], retention_s=300)
    a = cond(5, line="l1", machine="m1")
    b = Condition("threshold:oven", {"machine": "m1", "line": "l1"}, Severity.CRITICAL, t(2))
    changes = book.evaluate([a, b], t(6))
    assert len(changes) == 1 and len(book.active()) == 1
    alert = book.active()[0]
    assert alert.first_seen == t(2) and alert.severity is Severity.CRITICAL  # earliest, worst


def test_fingerprint_is_stable_and_ignores_label_order() -> None:
    fp = fingerprint("machine_stopped", {"line": "l1", "machine": "m1"})
    assert fp == fingerprint("machine_stopped", {"machine": "m1", "line": "l1"})
    assert fp == "9a8516798b06b99d"  # pinned: fingerprints are stored and must not drift
    assert fp != fingerprint("machine_stopped", {"line": "l1", "machine": "m2"})


def test_backfilled_condition_never_starts_an_alert() -> None:
    book = AlertBook([], retention_s=300)
    assert book.evaluate([cond(0, backfilled=True)], t(100)) == []
    assert book.active() == []


# --- acknowledgement --------------------------------------------------------------------


def test_only_a_firing_alert_can_be_acknowledged_and_the_ack_survives_flaps() -> None:
    book = AlertBook([], retention_s=300)
    [pending] = book.evaluate([cond(0, for_s=30, keep=20)], t(1))
    fp = pending.alert.fingerprint
    assert book.acknowledge(fp, "ana", t(2)) is None  # pending: nothing to acknowledge yet
    assert book.acknowledge("nope", "ana", t(2)) is None
    book.evaluate([cond(0, for_s=30, keep=20)], t(30))
    ack = book.acknowledge(fp, "ana", t(31))
    assert ack is not None and ack.change is AlertChange.ACKNOWLEDGED
    assert (ack.alert.acknowledged_by, ack.alert.acknowledged_at) == ("ana", t(31))
    assert book.acknowledge(fp, "ben", t(32)) is None  # the first ack stands
    book.evaluate([], t(40))  # held by keep_firing_for
    book.evaluate([cond(0, for_s=30, keep=20)], t(45))
    assert book.get(fp).acknowledged_by == "ana"
    book.evaluate([], t(50))
    book.evaluate([], t(70))  # resolved
    assert book.recent()[0].acknowledged_by == "ana"
    book.evaluate([cond(80)], t(80))  # a new episode starts unacknowledged
    assert book.get(fp).acknowledged_by is None


# --- silences ---------------------------------------------------------------------------


def test_silence_marks_matching_alerts_for_its_period_only() -> None:
    book = AlertBook([], retention_s=300)
    silence = book.add_silence({"machine": "m1", "rule": "threshold"}, t(10), t(20), "ana",
                               "sensor swap")
    other = cond(0, machine="m2", line="l1")
    assert kinds(book.evaluate([cond(0), other], t(5))) == ["firing", "firing"]
    changes = book.evaluate([cond(0), other], t(10))
    assert kinds(changes) == ["silenced"] and changes[0].alert.silenced_by == silence.id
    assert not changes[0].alert.notifiable
    assert kinds(book.evaluate([cond(0), other], t(20))) == ["unsilenced"]


def test_maintenance_window_silences_a_line_and_its_machines() -> None:
    engine = AlertEngine(MECHANICS, {"m1": "l1", "m2": "l1", "m3": "l2"})
    engine.maintenance(line="l1", starts=t(0), ends=t(3600), by="ana", comment="PM")
    for mid in ("m1", "m2", "m3"):
        engine.on_event(StateChanged(engine.machines[mid], mid, t(10), MachineState.DOWN,
                                     MachineState.RUNNING))
    changes = engine.on_tick(t(11))
    notifiable = {c.alert.labels.get("machine", c.alert.labels["line"]) for c in changes
                  if c.alert.notifiable}
    assert notifiable == {"m3"}
    assert {c.alert.rule_id for c in changes} == {"line_stopped", "machine_stopped"}


@pytest.mark.parametrize(("matchers", "starts", "ends"), [
    ({}, 0, 10), ({"machine": "m1"}, 10, 10), ({"machine": "m1"}, 10, 5),
])
def test_invalid_silences_are_refused(matchers, starts, ends) -> None:
    with pytest.raises(ValueError):
        AlertBook([], 300).add_silence(matchers, t(starts), t(ends), "ana", "")


def test_expiring_a_silence_unsilences_at_the_next_tick() -> None:
    book = AlertBook([], retention_s=300)
    silence = book.add_silence({"machine": "m1"}, t(0), t(100), "ana", "")
    book.evaluate([cond(0)], t(1))
    book.expire_silence(silence.id, t(5))
    assert kinds(book.evaluate([cond(0)], t(6))) == ["unsilenced"]
    assert book.silences(t(6)) == []


# --- the facade: stops, inhibition, backfill ---------------------------------------------


def down(mid: str, at: float, line: str = "l1", state=MachineState.DOWN, reason="Jam"):
    return StateChanged(line, mid, t(at), state, MachineState.RUNNING, "17", reason)


def test_machine_stop_fires_within_the_tick_and_resolves_when_it_runs() -> None:
    engine = AlertEngine(MECHANICS, {"m1": "l1", "m2": "l1"})
    engine.on_event(down("m1", 100.2))
    [fired] = engine.on_tick(t(101))
    assert fired.change is AlertChange.FIRING and fired.alert.rule_id == "machine_stopped"
    assert fired.alert.severity is Severity.CRITICAL and fired.alert.first_seen == t(100.2)
    assert fired.alert.message == "m1 stopped: Jam" and fired.alert.notifiable
    engine.on_event(StateChanged("l1", "m1", t(130), MachineState.RUNNING, MachineState.DOWN))
    assert kinds(engine.on_tick(t(131))) == ["resolved"]
    assert engine.active() == [] and len(engine.recent()) == 1


def test_machine_stop_after_s_holds_it_pending() -> None:
    rules = RulesConfig.model_validate({**_MECH, "machine_stop": {"after_s": 20}})
    engine = AlertEngine(rules, {"m1": "l1"})
    engine.on_event(down("m1", 0))
    assert kinds(engine.on_tick(t(1))) == ["pending"]
    assert kinds(engine.on_tick(t(20))) == ["firing"]


def test_machine_that_goes_offline_while_down_keeps_its_stop_alert() -> None:
    engine = AlertEngine(MECHANICS, {"m1": "l1"})
    engine.on_event(down("m1", 0))
    engine.on_tick(t(1))
    engine.on_event(StateChanged("l1", "m1", t(30), MachineState.OFFLINE, MachineState.DOWN,
                                 None, "stale"))
    assert engine.on_tick(t(31)) == []
    [alert] = engine.active()
    assert alert.state is AlertState.FIRING and "no data since" in alert.message
    assert "Jam" in alert.message


def running(engine: AlertEngine, at: float) -> None:
    for mid, line in engine.machines.items():
        engine.on_event(StateChanged(line, mid, t(at), MachineState.RUNNING,
                                     MachineState.OFFLINE))


def test_line_wide_stop_is_one_grouped_alert_and_inhibits_the_machines() -> None:
    engine = AlertEngine(MECHANICS, {"m1": "l1", "m2": "l1", "m3": "l1"})
    running(engine, 0)
    engine.on_event(down("m1", 10.0))
    engine.on_event(down("m2", 10.1, state=MachineState.IDLE, reason="starved"))
    engine.on_event(down("m3", 10.3))
    changes = engine.on_tick(t(11))
    notifiable = [c.alert for c in changes if c.alert.notifiable]
    assert [a.rule_id for a in notifiable] == ["line_stopped"]
    line = notifiable[0]
    assert line.first_seen == t(10.3) and line.labels == {"line": "l1"}
    assert line.message == "line l1 stopped: 3 of 3 machines (down: m1 (Jam), m3 (Jam); idle: m2)"
    machines = [a for a in engine.active() if a.rule_id == "machine_stopped"]
    assert len(machines) == 2  # still visible, but marked
    assert all(a.inhibited_by == line.fingerprint for a in machines)
    # the line restarts except m1: m1's own alert is no longer inhibited and is notified now
    engine.on_event(StateChanged("l1", "m2", t(50), MachineState.RUNNING, MachineState.IDLE))
    engine.on_event(StateChanged("l1", "m3", t(50), MachineState.RUNNING, MachineState.DOWN))
    changes = engine.on_tick(t(51))
    assert sorted((c.alert.rule_id, c.alert.labels.get("machine"), str(c.change))
                  for c in changes) == [
        ("line_stopped", None, "resolved"),
        ("machine_stopped", "m1", "uninhibited"),
        ("machine_stopped", "m3", "resolved"),
    ]


def test_line_stop_fraction_and_offline_machines() -> None:
    rules = RulesConfig.model_validate({"line_stop": {"fraction": 0.6}, **_MECH})
    engine = AlertEngine(rules, {"m1": "l1", "m2": "l1", "m3": "l1", "m4": "l1"})
    running(engine, 0)
    engine.on_event(down("m1", 5))
    engine.on_event(down("m2", 6))  # 2 of 4: not yet
    assert {c.alert.rule_id for c in engine.on_tick(t(7))} == {"machine_stopped"}
    # m4 goes offline: unknown, left out of the count -> 2 of 3 stopped >= 0.6
    engine.on_event(StateChanged("l1", "m4", t(8), MachineState.OFFLINE, MachineState.RUNNING))
    changes = engine.on_tick(t(9))
    assert [c.alert.rule_id for c in changes if c.change is AlertChange.FIRING] == [
        "line_stopped"]


def test_single_machine_line_gets_no_line_alert() -> None:
    engine = AlertEngine(MECHANICS, {"m1": "l1"})
    engine.on_event(down("m1", 0))
    assert [c.alert.rule_id for c in engine.on_tick(t(1))] == ["machine_stopped"]


def test_a_down_machine_inhibits_its_own_spike_and_threshold_alerts() -> None:
    rules = RulesConfig.model_validate({"thresholds": [
        {"id": "oven", "machine": "m1", "signal": "temperature", "above": 80}], **_MECH})
    engine = AlertEngine(rules, {"m1": "l1", "m2": "l1"})
    engine.on_sample(sample("m1", "temperature", 90.0, t(0)), t(0))
    engine.on_sample(sample("m2", "temperature", 90.0, t(0)), t(0))  # m2 has no rule
    [fired] = engine.on_tick(t(1))
    assert fired.alert.rule_id == "threshold:oven" and fired.alert.notifiable
    engine.on_event(down("m1", 2))
    changes = engine.on_tick(t(3))
    by_rule = {c.alert.rule_id: c for c in changes}
    assert by_rule["threshold:oven"].change is AlertChange.INHIBITED
    assert not by_rule["threshold:oven"].alert.notifiable
    assert by_rule["machine_stopped"].change is AlertChange.FIRING
    engine.on_event(StateChanged("l1", "m1", t(4), MachineState.RUNNING, MachineState.DOWN))
    changes = engine.on_tick(t(5))
    assert sorted(kinds(changes)) == ["resolved", "uninhibited"]


def test_backfilled_data_never_fires_a_live_alert() -> None:
    rules = RulesConfig.model_validate({"thresholds": [
        {"id": "oven", "machine": "m1", "signal": "temperature", "above": 80}]})
    engine = AlertEngine(rules, {"m1": "l1", "m2": "l2"})
    now = t(3600)
    engine.on_tick(now)
    # an hour-old stop, reject burst and temperature arrive (gateway buffer, replay)
    engine.on_event(down("m1", 10))
    for i in range(50):
        engine.on_event(PartsProduced("l2", "m2", t(10 + i), 0, 1))
    engine.on_sample(sample("m1", "temperature", 99.0, t(20)), now)
    assert engine.on_tick(t(3601)) == []
    assert engine.active() == []
    # data 59 s old is within the default lag: live
    engine.on_event(StateChanged("l2", "m2", t(3602 - 59), MachineState.DOWN,
                                 MachineState.RUNNING))
    assert [c.alert.labels["machine"] for c in engine.on_tick(t(3602))] == ["m2"]


def test_a_backfilled_stop_confirmed_by_live_data_becomes_a_live_alert() -> None:
    engine = AlertEngine(MECHANICS, {"m1": "l1"})
    engine.on_tick(t(3600))
    engine.on_event(down("m1", 10))  # old
    engine.on_event(StateChanged("l1", "m1", t(3590), MachineState.OFFLINE, MachineState.DOWN))
    assert engine.on_tick(t(3600)) == []
    engine.on_event(StateChanged("l1", "m1", t(3601), MachineState.DOWN, MachineState.OFFLINE))
    [fired] = engine.on_tick(t(3602))
    assert fired.change is AlertChange.FIRING and fired.alert.first_seen == t(3601)


def test_line_stop_through_the_trackers() -> None:
    """The wiring the engine will do: tracker events in, alert changes out."""
    config = plant(machines=[machine("m1"), machine("m2"), machine("m3")])
    engine = Engine(config, T0)
    alerts = AlertEngine(MECHANICS, {m.id: line.id for line, m in config.machines()})
    changes = []

    def feed(mid: str, code: int, at: float) -> None:
        for event in engine.on_sample(sample(mid, "state", code, t(at))):
            alerts.on_event(event)
        alerts.on_sample(sample(mid, "state", code, t(at)), t(at))

    def tick(at: float) -> None:
        for event in engine.on_tick(t(at)):
            alerts.on_event(event)
        changes.extend(alerts.on_tick(t(at)))

    for mid in ("m1", "m2", "m3"):
        feed(mid, 1, 0)
    tick(1)
    feed("m2", 4, 100.0)  # m2 jams; m1 blocked, m3 starved a moment later
    feed("m1", 3, 100.4)
    feed("m3", 2, 100.6)
    tick(101)
    assert [(c.alert.rule_id, str(c.change)) for c in changes if c.alert.notifiable] == [
        ("line_stopped", "firing")]
    line = changes[0].alert
    assert line.message == "line l1 stopped: 3 of 3 machines (idle: m1, m3; down: m2)"
    assert line.first_seen == t(100.6)
    [m2] = [c.alert for c in changes if c.alert.rule_id == "machine_stopped"]
    assert m2.labels["machine"] == "m2" and m2.inhibited_by == line.fingerprint


def test_rules_never_read_the_wall_clock() -> None:
    banned = re.compile(r"datetime\.now\(|time\.time\(|asyncio\.sleep\(|datetime\.utcnow\(")
    for path in Path("rules").glob("*.py"):
        assert not banned.search(path.read_text(encoding="utf-8")), path


# --- properties -------------------------------------------------------------------------

ALLOWED = {
    None: {"pending", "firing"},
    "pending": {"firing", "cleared"},
    "firing": {"resolved"},
}


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(st.tuples(st.floats(0.1, 30), st.booleans(), st.sampled_from(["a", "b"])),
                   min_size=1, max_size=40),
    for_s=st.sampled_from([0.0, 5.0, 20.0]),
    keep=st.sampled_from([0.0, 10.0]),
)
def test_lifecycle_never_goes_backwards(steps, for_s, keep) -> None:
    """Never firing -> pending; resolved only after firing; cleared only from pending."""
    book = AlertBook([], retention_s=50)
    now, since = 0.0, {"a": None, "b": None}
    state: dict[str, str | None] = {}
    for gap, on, machine_id in steps:
        now += gap
        if on and since[machine_id] is None:
            since[machine_id] = now
        elif not on:
            since[machine_id] = None
        conds = [cond(s, for_s=for_s, keep=keep, line="l1", machine=m)
                 for m, s in since.items() if s is not None]
        for change in book.evaluate(conds, t(now)):
            fp = change.alert.fingerprint
            kind = str(change.change)
            if kind == "expired":
                continue
            assert kind in ALLOWED[state.get(fp)], (state.get(fp), kind)
            state[fp] = None if kind in ("resolved", "cleared") else kind
            if kind == "firing":
                held = (t(now) - change.alert.first_seen).total_seconds()
                assert held >= for_s
    for alert in book.active():
        assert alert.state in (AlertState.PENDING, AlertState.FIRING)
    for alert in book.recent():
        assert alert.fired_at is not None and alert.resolved_at is not None


def test_next_due_is_when_the_earliest_pending_hold_ends() -> None:
    from datetime import UTC, datetime, timedelta

    from linemon.model import Severity
    from rules.alerts import AlertBook, Condition

    t0 = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
    book = AlertBook([], retention_s=900)
    assert book.next_due() is None
    slow = Condition("machine_stopped", {"machine": "a"}, Severity.CRITICAL, t0, for_s=30)
    fast = Condition("machine_stopped", {"machine": "b"}, Severity.CRITICAL, t0, for_s=5)
    book.evaluate([slow, fast], t0 + timedelta(seconds=1))
    assert book.next_due() == t0 + timedelta(seconds=5)
    book.evaluate([slow, fast], t0 + timedelta(seconds=5))  # b fires on time
    assert book.next_due() == t0 + timedelta(seconds=30)
