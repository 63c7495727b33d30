"""The dispatcher, table-style with explicit times: routing, rosters, escalation, grouping,
quiet hours, silences, resolved notices. No I/O, no clock: every `now` is passed in."""

from __future__ import annotations

from linemon.model import AlertChange, AlertChanged, Severity
from rules.alerting import LINE_STOPPED
from rules.alerts import AlertBook, Condition
from rules.notify.dispatch import Cancel, Delivery, Dispatcher, Intent
from rules.notify.tokens import AckSigner
from tests.notify.helpers import SECRET, alert, changed, config, shifts, t

ESCALATING = {
    "escalation": {"stops": {"levels": [
        {"notify": [{"channel": "phones", "to": ["roster:supervisors"]}],
         "escalate_after_s": 120},
        {"notify": [{"channel": "phones", "to": ["bob"]}, {"channel": "mail", "to": ["dave"]}],
         "escalate_after_s": 300},
    ], "repeat": 1}},
    "routes": [{"name": "stops", "escalation": "stops"}],
}


def dispatcher(**data) -> Dispatcher:
    return Dispatcher(config(**data), timezone="UTC", shift_at=shifts,
                      signer=AckSigner(SECRET, 3600))


class Run:
    """Feeds changes and ticks to one dispatcher and keeps every intent it answered."""

    def __init__(self, d: Dispatcher) -> None:
        self.d = d
        self.intents: list[Intent] = []

    def change(self, c: AlertChanged) -> list[Intent]:
        out = self.d.on_change(c) + self.d.on_tick(c.at)
        self.intents += out
        return out

    def tick(self, at: float) -> list[Intent]:
        out = self.d.on_tick(t(at))
        self.intents += out
        return out

    def sent(self, transition: str = "firing") -> list[tuple[int, str, str]]:
        return [(d.step, d.channel, d.recipient) for d in self.intents
                if isinstance(d, Delivery) and d.transition == transition]


def who(intents: list[Intent]) -> list[str]:
    return [f"{d.channel}:{d.recipient}" for d in intents if isinstance(d, Delivery)]


def test_a_roster_reaches_whoever_is_on_shift() -> None:
    for hour, person in ((7, "alice"), (15, "bob"), (23, "carol")):
        d = dispatcher()
        a = alert(at=hour * 3600)
        [delivery] = d.on_change(changed(a, AlertChange.FIRING, hour * 3600)) + d.on_tick(
            t(hour * 3600))
        assert isinstance(delivery, Delivery)
        assert (delivery.recipient, delivery.address) == (person, f"{person}-phone")
        assert delivery.key == f"route-0/{a.fingerprint}@{int(a.first_seen.timestamp() * 1000)}" \
            f"/firing/0/phones/{person}"
        nonce = AckSigner(SECRET, 3600).verify(
            delivery.message.ack_url.rsplit("/", 1)[1], t(hour * 3600)).nonce
        assert nonce == delivery.token_nonce  # the link names this very delivery


def test_routes_match_by_line_machine_rule_severity_and_shift() -> None:
    d = dispatcher(routes=[
        {"name": "night-warnings", "match": {"severities": ["warning"], "shifts": ["night"]},
         "notify": [{"channel": "mail", "to": ["dave"]}]},
        {"name": "press", "match": {"machines": ["press-1"], "rules": ["machine_stopped"]},
         "notify": [{"channel": "phones", "to": ["carol"]}], "continue": True},
        {"name": "line-1", "match": {"lines": ["line-1"]},
         "notify": [{"channel": "hook"}]},
    ])
    r = d.router
    shift = "early"
    assert r.routes_for(alert("press-1"), shift) == [1, 2]  # `continue` goes on to line-1
    assert r.routes_for(alert("weld-1"), shift) == [2]
    assert r.routes_for(alert("press-1", rule="defect_spike"), shift) == [2]
    night_warning = alert("weld-1", severity=Severity.WARNING)
    assert r.routes_for(night_warning, "night") == [0]  # first match, no continue
    assert r.routes_for(alert(line="line-2", machine="x"), shift) == []


def test_escalation_goes_level_by_level_then_repeats_then_stops() -> None:
    run = Run(dispatcher(**ESCALATING))
    a = alert(at=0)
    assert who(run.change(changed(a, AlertChange.FIRING, 0))) == ["phones:alice"]
    assert run.tick(119) == []
    assert who(run.tick(120)) == ["phones:bob", "mail:dave"]
    assert who(run.tick(420)) == ["phones:alice"]  # repeat: level 0 again, 300 s later
    assert who(run.tick(540)) == ["phones:bob", "mail:dave"]
    assert run.tick(10_000) == [] and run.d.next_due() is None  # levels x (repeat + 1) done
    steps = [step for step, _, _ in run.sent()]
    assert steps == [0, 1, 1, 2, 3, 3]  # each step its own idempotency key


def test_an_acknowledgement_stops_escalation_and_cancels_what_is_queued() -> None:
    run = Run(dispatcher(**ESCALATING))
    a = alert(at=0)
    run.change(changed(a, AlertChange.FIRING, 0))
    out = run.change(changed(a, AlertChange.ACKNOWLEDGED, 60, acknowledged_by="alice"))
    [cancel] = out
    assert isinstance(cancel, Cancel) and "alice" in cancel.reason
    assert run.tick(10_000) == []
    resolved = run.change(changed(a, AlertChange.RESOLVED, 600, acknowledged_by="alice"))
    assert who(resolved) == ["phones:alice"]  # only who was told hears it is over
    [r] = resolved
    assert isinstance(r, Delivery) and r.message.title.startswith("RESOLVED: line-1 / press-1")
    assert r.message.ack_url is None and "after 10 min" in r.message.body


def test_resolved_reaches_every_level_and_threads_under_their_first_message() -> None:
    run = Run(dispatcher(**ESCALATING))
    a = alert(at=0)
    run.change(changed(a, AlertChange.FIRING, 0))
    run.tick(120)
    resolved = run.change(changed(a, AlertChange.RESOLVED, 200))
    assert sorted(who(resolved)) == ["mail:dave", "phones:alice", "phones:bob"]
    first = {(d.channel, d.recipient): d.key for d in run.intents
             if isinstance(d, Delivery) and d.transition == "firing"}
    for d in resolved:
        assert isinstance(d, Delivery)
        assert d.message.thread_key == first[(d.channel, d.recipient)]
    assert run.d.incidents() == [] and run.tick(1000) == []


def test_a_line_stop_inside_the_group_wait_is_one_message() -> None:
    """The press jams; two seconds later the whole line stands. One push: the line's."""
    run = Run(dispatcher(routes=[{"notify": [{"channel": "phones", "to": ["alice"]}],
                                  "group_wait_s": 5}]))
    book = AlertBook([LINE_STOPPED], retention_s=900)
    press = Condition("machine_stopped", {"line": "line-1", "machine": "press-1"},
                      Severity.CRITICAL, since=t(0), message="press-1 stopped: Jam")
    line = Condition("line_stopped", {"line": "line-1"}, Severity.CRITICAL, since=t(2),
                     message="line line-1 stopped: 5 of 5 machines")
    for at, conditions in ((0, [press]), (2, [press, line]), (5, [press, line])):
        for c in book.evaluate(conditions, t(at)):
            run.change(c)
        run.tick(at)
    [delivery] = [d for d in run.intents if isinstance(d, Delivery)]
    assert delivery.message.title == "CRITICAL: line-1: line stopped"
    assert delivery.created_at == t(5)


def test_a_burst_within_the_group_wait_is_one_message() -> None:
    run = Run(dispatcher(routes=[{"notify": [{"channel": "phones", "to": ["alice"]}],
                                  "group_wait_s": 5}]))
    press, weld = alert("press-1", at=0), alert("weld-1", at=3)
    assert run.change(changed(press, AlertChange.FIRING, 0)) == []
    assert run.change(changed(weld, AlertChange.FIRING, 3)) == []
    [d] = run.tick(5)
    assert isinstance(d, Delivery)
    assert d.message.title == "CRITICAL: 2 alerts on line-1"
    assert d.fingerprints == (press.fingerprint, weld.fingerprint)
    later = alert("pack-1", at=9)  # after the window: its own message
    assert who(run.change(changed(later, AlertChange.FIRING, 9))) == []
    assert who(run.tick(14)) == ["phones:alice"]


def test_quiet_hours_hold_lesser_alerts_until_morning() -> None:
    quiet = [{"days": ["sun"], "start": "22:00", "end": "06:00", "min_severity": "critical"}]
    run = Run(dispatcher(quiet_hours=quiet))
    sunday_night = -3 * 3600  # 2026-03-01 (a Sunday) 03:00 UTC, inside the window
    warning = alert("oven-1", rule="threshold:oven", severity=Severity.WARNING, at=sunday_night)
    critical = alert("press-1", at=sunday_night)
    assert run.change(changed(warning, AlertChange.FIRING, sunday_night)) == []
    assert who(run.change(changed(critical, AlertChange.FIRING, sunday_night))) == [
        "phones:carol"]  # critical passes; nobody is on shift at 03:00: `otherwise`
    assert run.tick(-1) == []
    assert who(run.tick(0)) == ["phones:alice"]  # 06:00 Monday: quiet hours over, early shift


def test_silenced_and_inhibited_alerts_are_not_sent_and_pause_escalation() -> None:
    run = Run(dispatcher(**ESCALATING))
    silenced = alert("weld-1", at=0)
    assert run.change(changed(silenced, AlertChange.FIRING, 0, silenced_by="silence-1")) == []
    a = alert(at=0)
    run.change(changed(a, AlertChange.FIRING, 0))
    run.change(changed(a, AlertChange.INHIBITED, 30))
    assert run.tick(600) == []  # paused: the line stop explains it
    assert who(run.change(changed(a, AlertChange.UNINHIBITED, 700))) == [
        "phones:bob", "mail:dave"]  # overdue: goes on at once


def test_the_same_events_give_the_same_keys_after_a_restart() -> None:
    a = alert(at=0)
    keys = []
    for _ in range(2):  # two processes, one after the other
        run = Run(dispatcher(**ESCALATING))
        run.change(changed(a, AlertChange.FIRING, 0))
        run.tick(120)
        keys.append([d.key for d in run.intents if isinstance(d, Delivery)])
    assert keys[0] == keys[1] and len(set(keys[0])) == 3


def test_a_new_occurrence_of_the_same_alert_is_a_new_incident() -> None:
    run = Run(dispatcher())
    first, second = alert(at=0), alert(at=100)
    run.change(changed(first, AlertChange.FIRING, 0))
    run.change(changed(first, AlertChange.RESOLVED, 50))
    run.change(changed(second, AlertChange.FIRING, 100))
    incidents = [d.incident for d in run.intents if isinstance(d, Delivery)]
    assert len(incidents) == 3 and incidents[0] == incidents[1] != incidents[2]




def test_after_a_restart_a_stop_still_on_continues_its_incident() -> None:
    """The first process called alice and escalated to bob and dave; it restarts. The stop,
    still on, fires again (a new occurrence): nobody is called again, and the repeat comes
    when it was due, under the same keys."""
    first = Run(dispatcher(**ESCALATING))
    a = alert(at=0)
    first.change(changed(a, AlertChange.FIRING, 0))
    first.tick(120)
    records = first.d.take_records()
    assert [(r.step, r.open) for r in records] == [(1, True)]

    second = Run(dispatcher(**ESCALATING))
    second.d.restore(records, t(200))
    again = alert(at=205)  # the new engine's alert: same fingerprint, new first_seen
    assert second.change(changed(again, AlertChange.FIRING, 206)) == []
    assert who(second.tick(420)) == ["phones:alice"]  # step 2 (the repeat), due at 120 + 300
    resolved = second.change(changed(again, AlertChange.RESOLVED, 500))
    assert sorted(who(resolved)) == ["mail:dave", "phones:alice", "phones:bob"]
    incident = records[0].id
    assert {d.incident for d in second.intents if isinstance(d, Delivery)} == {incident}
    assert [r.open for r in second.d.take_records()][-1] is False


def test_incidents_nobody_claims_after_a_restart_are_closed_quietly() -> None:
    first = Run(dispatcher())
    first.change(changed(alert(at=0), AlertChange.FIRING, 0))
    second = Run(dispatcher())
    second.d.restore(first.d.take_records(), t(100))
    assert second.tick(699) == [] and second.d.take_records() == []
    assert second.tick(700) == []  # outbox.resume_window_s (600 s) is over
    [closed] = second.d.take_records()
    assert not closed.open
    later = alert(at=800)  # the same machine stops again: a new incident, a new call
    assert who(second.change(changed(later, AlertChange.FIRING, 800))) == ["phones:alice"]
