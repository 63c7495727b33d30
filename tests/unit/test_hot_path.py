"""The per-sample path's shortcuts give exactly what the plain code gives.

Each shortcut (a coercer picked per tag, a cached timestamp or series key, a verdict not
judged again, a batch call, samples no rule looks at) is checked against the long way
round on the cases where the two could part: odd values, odd timestamps, odd tags.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from asyncua import ua
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.historian.lineprotocol import (
    LineProtocolError,
    escape_tag,
    format_fields,
    series_key,
)
from collector.historian.schema import (
    DOWNTIME,
    OEE,
    PARTS,
    STATE,
    SampleEncoder,
    encode_event,
    to_ns,
)
from collector.sources.base import RateLimitedLog, SourceStats
from collector.sources.opcua import OpcUaSource
from collector.sources.opcua_decode import data_value_parts
from collector.sources.payload import Rejected, coerce, coercer
from collector.sources.screening import TagScreen
from linemon.config import PlantConfig
from linemon.model import (
    DowntimeEvent,
    DowntimeStarted,
    MachineState,
    OeeFigures,
    OeeSnapshot,
    PartsProduced,
    Quality,
    Sample,
    StateChanged,
)
from rules.alerting import AlertEngine
from rules.defects import DefectSpikeDetector
from rules.engine import Engine
from rules.rules_config import DefectSpikeConfig, RulesConfig
from tests.unit.plant import T0, machine, plant, sample


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- coercion picked per tag -----------------------------------------------------------------

VALUES: list[object] = [0, 1, -7, 2**70, 10**400, True, False, 1.0, 2.5, -0.0, math.nan,
                        math.inf, -math.inf, 1e300, "12", "1.5", "true", "0", "", "abc", None,
                        [1], b"1"]


def _outcome(fn, value: object) -> tuple[object, ...]:
    try:
        result = fn(value)
    except Rejected as err:
        return ("rejected", err.reason, str(err))
    except Exception as err:  # whatever coerce raises, the coercer must raise too
        return ("raised", type(err))
    return ("value", type(result), result if result == result else "nan")


@pytest.mark.parametrize("wanted", ["auto", "int", "float", "bool", "str"])
def test_a_tags_coercer_returns_what_coerce_returns(wanted: str) -> None:
    fast = coercer(wanted)
    for value in VALUES:
        assert _outcome(fast, value) == _outcome(lambda v: coerce(v, wanted), value), value


def test_a_coerced_float_is_the_same_object() -> None:
    value = 51.25
    assert coercer("float")(value) is value
    assert coerce(value, "float") is value


# --- OPC-UA values to samples ----------------------------------------------------------------

def _opcua_source() -> OpcUaSource:
    config = PlantConfig.model_validate({
        "site": {"name": "test", "timezone": "UTC"},
        "calendar": {"shifts": [{"name": "day", "start": "06:00", "end": "18:00"}]},
        "sources": [{"kind": "opcua", "name": "plc", "endpoint": "opc.tcp://127.0.0.1:4840/"}],
        "lines": [{"id": "l1", "machines": [{
            "id": "m1", "source": "plc", "ideal_cycle_time_s": 2.0, "tags": {
                "temperature": {"node": "nsu=urn:t;s=m1.temp", "type": "float"},
                "good_count": {"node": "nsu=urn:t;s=m1.good", "type": "int"},
                "state": {"node": "nsu=urn:t;s=m1.state"}}}]}],
    })
    return OpcUaSource(config.sources[0], config, list(config.machines()))


def test_opcua_values_become_samples_by_status_timestamp_and_type() -> None:
    source = _opcua_source()
    temp, good, state = (source.tags[f"nsu=urn:t;s=m1.{n}"] for n in ("temp", "good", "state"))
    src_ts, srv_ts = t(1), t(2)
    naive = datetime(2026, 3, 2, 6, 0, 3)

    def dv(value: object, vtype: ua.VariantType, status: int | None = 0, **ts: datetime
           ) -> ua.DataValue:
        out = ua.DataValue(ua.Variant(value, vtype), **ts)
        out.StatusCode = None if status is None else ua.StatusCode(status)
        return out

    values = [
        (temp, dv(20.5, ua.VariantType.Double, SourceTimestamp=src_ts, ServerTimestamp=srv_ts)),
        (temp, dv(21.5, ua.VariantType.Double, None, ServerTimestamp=srv_ts)),
        (temp, dv(22.5, ua.VariantType.Double, SourceTimestamp=naive)),
        (temp, dv(23.5, ua.VariantType.Double)),  # no timestamp at all: the receive time
        (good, dv(7, ua.VariantType.UInt32, ua.StatusCodes.GoodMoreData,
                  SourceTimestamp=src_ts)),
        (good, dv(8, ua.VariantType.UInt32, ua.StatusCodes.UncertainLastUsableValue,
                  SourceTimestamp=src_ts)),
        (state, dv(1, ua.VariantType.Int32, ua.StatusCodes.BadCommunicationError,
                   SourceTimestamp=src_ts)),
        (temp, dv(math.nan, ua.VariantType.Double, SourceTimestamp=src_ts)),
        (good, dv("seven", ua.VariantType.String, SourceTimestamp=src_ts)),
        (good, dv(9.0, ua.VariantType.Double, SourceTimestamp=src_ts)),
        (state, dv("2", ua.VariantType.String, SourceTimestamp=src_ts)),
    ]
    before = datetime.now(UTC)
    # what the source's queue carries: (tag, value, status code, timestamp), opcua_decode.py
    samples = source._to_samples([(tag, *data_value_parts(d)) for tag, d in values])
    received = samples[0].received_ts
    assert before <= received <= datetime.now(UTC)
    g, u, b = Quality.GOOD, Quality.UNCERTAIN, Quality.BAD
    assert samples == [
        Sample("m1", "temperature", 20.5, src_ts, received, g, "plc"),
        Sample("m1", "temperature", 21.5, srv_ts, received, g, "plc"),
        Sample("m1", "temperature", 22.5, naive.replace(tzinfo=UTC), received, g, "plc"),
        Sample("m1", "temperature", 23.5, received, received, g, "plc"),
        Sample("m1", "good_count", 7, src_ts, received, g, "plc"),
        Sample("m1", "good_count", 8, src_ts, received, u, "plc"),
        Sample("m1", "state", 0, src_ts, received, b, "plc"),
        Sample("m1", "good_count", 9, src_ts, received, g, "plc"),
        Sample("m1", "state", "2", src_ts, received, g, "plc"),
    ]
    assert [type(s.value) for s in samples[4:5] + samples[7:8]] == [int, int]
    assert source.stats.received == len(values)
    assert dict(source.stats.rejected) == {"nan_or_inf": 1, "wrong_type": 1}
    assert source.stats.last_message_at == {"m1": received}


def test_a_bad_value_alone_does_not_count_as_hearing_from_the_machine() -> None:
    source = _opcua_source()
    state = source.tags["nsu=urn:t;s=m1.state"]
    bad = ua.DataValue(ua.Variant(1, ua.VariantType.Int32), SourceTimestamp=t(1))
    bad.StatusCode = ua.StatusCode(ua.StatusCodes.BadNotConnected)
    values = [(state, *data_value_parts(bad))]
    assert [s.quality for s in source._to_samples(values)] == [Quality.BAD]
    assert source.stats.last_message_at == {}


# --- screening --------------------------------------------------------------------------------

def test_screen_drops_repeats_marks_gaps_once_and_restamps_the_first_value_after_one() -> None:
    stats = SourceStats()
    screen = TagScreen("gw", stats, RateLimitedLog(logging.getLogger("test")),
                       [("m1", "good_count"), ("m1", "temperature")], {"m1": 1000})

    def s(signal: str, value: object, at: float, received: float | None = None,
          quality: Quality = Quality.GOOD) -> Sample:
        return Sample("m1", signal, value, t(at), t(at if received is None else received),
                      quality, "gw")

    first = s("good_count", 10, 0)
    repeat = s("good_count", 10, 0, received=1)
    lower = s("good_count", 3, 2)
    assert screen.screen([first, repeat, lower]) == [first, lower]
    assert stats.duplicates == 1
    assert stats.rejected["counter_backwards"] == 1
    gap = screen.outage(t(5))
    assert [(x.signal, x.quality) for x in gap] == [("good_count", Quality.BAD),
                                                   ("temperature", Quality.BAD)]
    assert screen.outage(t(6)) == []  # already marked
    back = s("good_count", 3, 2, received=9)  # the old value again, after the gap
    fresh = s("temperature", 20.0, 8, received=9)
    assert screen.screen([back, fresh]) == [
        Sample("m1", "good_count", 3, t(9), t(9), Quality.GOOD, "gw"), fresh]
    assert screen.screen([s("good_count", 3, 2, received=10)]) == []  # a repeat again
    assert stats.duplicates == 2


# --- the historian's encoding -------------------------------------------------------------------

def _fresh_encode(s: Sample, lines: dict[str, str]) -> str:
    return SampleEncoder(lines).encode(s).lp  # nothing cached


def test_sample_timestamps_cached_by_value_give_each_sample_its_own_instant() -> None:
    lines = {"m1": "l1"}
    ny = ZoneInfo("America/New_York")
    one_thirty = datetime(2025, 11, 2, 1, 30, tzinfo=ny)  # happens twice (DST ends)
    base = datetime(2026, 3, 2, 6, 0, 0, 250_000, tzinfo=UTC)
    stamps = [
        base, base.replace(), base + timedelta(0),  # equal, distinct objects
        base.astimezone(ZoneInfo("Europe/Berlin")),  # the same instant in another zone
        base.replace(tzinfo=None),  # naive: taken as UTC
        base,
        one_thirty, one_thirty.replace(fold=1),  # equal in their zone, an hour apart
        one_thirty.astimezone(UTC), one_thirty.replace(fold=1).astimezone(UTC),
        base + timedelta(microseconds=1), base,
    ]
    encoder = SampleEncoder(lines)
    for i, at in enumerate(stamps):
        s = Sample("m1", "temperature", 20.0 + i, at, base, Quality.GOOD, "gw")
        record = encoder.encode(s)
        assert record.lp == _fresh_encode(s, lines), i
        assert record.ts_ns == to_ns(at), i
    assert to_ns(one_thirty.replace(fold=1)) - to_ns(one_thirty) == 3600 * 10**9


def test_field_keys_are_escaped_as_before_and_bad_ones_always_refused() -> None:
    fields = {"a b": 1, "x=y": 2.5, "c,d": "t", "plain": True, "none": None, "empty": ""}
    want = 'a\\ b=1i,x\\=y=2.5,c\\,d="t",plain=true'
    assert format_fields(fields) == want
    assert format_fields(fields) == want  # the keys now come from the cache
    assert [escape_tag(k, "field key") for k in ("a b", "x=y", "c,d")] == [
        "a\\ b", "x\\=y", "c\\,d"]
    for _ in range(2):
        with pytest.raises(LineProtocolError, match="field key"):
            format_fields({"bad\\": 1})
        with pytest.raises(LineProtocolError, match="field key"):
            format_fields({"two\nlines": 1})


@pytest.mark.parametrize(("line", "machine"), [
    ("l1", "m1"), ("line a,1", "m=2 b"), ("", "m1"), ("l1", None), ("lé", "m\\x"),
])
def test_event_series_keys_from_the_cache_are_escaped_exactly_as_series_key_does(
        line: str, machine: str | None) -> None:
    figures = OeeFigures(100.0, 90.0, 2.0, 40, 38, 0.9, 0.8, 0.95, 0.684)
    stop = DowntimeEvent("s1", line, machine or "", t(0))
    cases = [
        (PARTS, machine, PartsProduced(line, machine or "", t(1), 3, 1, 2.0)),
        (STATE, machine, StateChanged(line, machine or "", t(1), MachineState.DOWN,
                                      MachineState.RUNNING, "17", "Jam")),
        (DOWNTIME, machine or "", DowntimeStarted(stop)),
        (OEE, machine, OeeSnapshot(t(1), line, machine, figures, "day")),
    ]
    for measurement, tag_machine, event in cases:
        key = series_key(measurement, {"line": line, "machine": tag_machine})
        for _ in range(2):  # the second comes from the cache
            record = encode_event(event)
            assert record.lp.startswith(key + " "), (record.lp, key)
            assert record.kind == "event" and record.priority


def test_an_event_with_an_unwritable_tag_is_refused_every_time() -> None:
    event = PartsProduced("l1", "m\n1", t(1), 1, 0, 2.0)
    for _ in range(2):
        with pytest.raises(LineProtocolError):
            encode_event(event)


def test_a_parts_event_line_is_unchanged() -> None:
    event = PartsProduced("line a", "m1", t(1), 3, 0, 2.0)
    assert encode_event(event).lp == (
        f"parts,line=line\\ a,machine=m1 good=3i,ideal_cycle_time_s=2.0 {to_ns(t(1))}")


# --- the engine -----------------------------------------------------------------------------

def _script() -> list[Sample]:
    out = []
    for second in range(0, 400, 5):
        at = t(second)
        for mid in ("m1", "m2", "m3"):
            out.append(sample(mid, "good_count", second // 5, at))
            out.append(sample(mid, "temperature", 60 + (second % 40), at))
            if second % 100 == 0:
                out.append(sample(mid, "state", 4 if second % 200 else 1, at))
                out.append(sample(mid, "fault_code", 17 if second % 200 else 0, at))
            if second % 35 == 0:
                out.append(sample(mid, "reject_count", second // 35, at))
        if second == 150:
            out.append(sample("m2", "state", 1, at, Quality.BAD))
        if second == 300:
            out.append(sample("ghost", "temperature", 1.0, at))  # no such machine
    return out


def _rules() -> RulesConfig:
    return RulesConfig.model_validate({
        "thresholds": [{"id": "hot", "machine": "m1", "signal": "temperature", "above": 90}],
        "spc": [{"id": "imr", "machine": "m2", "kind": "imr", "signal": "temperature",
                 "baseline_points": 5}],
        "stale": [{"machine": "m3", "after_s": 20}],
    })


def test_a_batch_gives_the_events_and_state_of_one_sample_at_a_time() -> None:
    config = plant([machine("m1"), machine("m2"), machine("m3")],
                   rules=_rules().model_dump(mode="json"))
    one, batch = Engine(config, T0), Engine(config, T0)
    samples = _script()
    singly: list[object] = []
    batched: list[object] = []
    for i in range(0, len(samples), 7):  # batches of 7, one `now` per batch
        chunk = samples[i:i + 7]
        now = chunk[-1].received_ts + timedelta(seconds=0.5)
        for s in chunk:
            singly += one.on_sample(s, now)
        batched += batch.on_samples(chunk, now)
        if i % 21 == 0:
            singly += one.on_tick(now)
            batched += batch.on_tick(now)
    assert singly == batched
    assert any(isinstance(e, PartsProduced) for e in batched)
    end = t(500)
    assert [batch.machine_view(m, end) for m in ("m1", "m2", "m3")] == [
        one.machine_view(m, end) for m in ("m1", "m2", "m3")]
    assert one.on_tick(end) == batch.on_tick(end)
    assert [a.fingerprint for a in one.alerts.active()] == [
        a.fingerprint for a in batch.alerts.active()]


def test_only_the_signals_a_rule_looks_at_reach_thresholds_and_charts() -> None:
    alerts = AlertEngine(_rules(), {"m1": "l1", "m2": "l1", "m3": "l1"})
    now = t(10)
    alerts.on_sample(sample("m1", "pressure", 500.0, now), now)  # no rule: passes by
    alerts.on_sample(sample("m2", "temperature", 500.0, now), now)  # the chart's, not hot's
    (watch,) = alerts.thresholds[("m1", "temperature")]
    assert watch.tripped_since is None
    alerts.on_sample(sample("m1", "temperature", 95.0, t(-120)), now)  # too late to count
    assert watch.tripped_since is None
    alerts.on_sample(sample("m1", "temperature", 95.0, t(9)), now)
    assert watch.tripped_since == t(9) and watch.value == 95.0
    (chart,) = alerts.process_charts[("m2", "temperature")]
    assert chart.previous == 500.0


# --- defect spikes: a verdict not judged again ------------------------------------------------

class AlwaysJudged(DefectSpikeDetector):
    """The detector without its shortcut: every evaluation judges from scratch."""

    def _judge(self, now: datetime, first: int):  # type: ignore[no-untyped-def]
        self._judged = None
        return super()._judge(now, first)


CONFIGS = [
    DefectSpikeConfig(),
    DefectSpikeConfig(significance=1.0),
    DefectSpikeConfig(significance=1.0, min_rate=0.0, absolute_rate=None, window_parts=8,
                      window_s=20, baseline_window_s=90, baseline_min_parts=10, min_parts=3),
]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(range(len(CONFIGS))),
       st.lists(st.tuples(st.sampled_from(["add", "tick"]), st.floats(0, 30),
                          st.integers(0, 4), st.integers(0, 3)), min_size=1, max_size=300))
def test_a_verdict_taken_again_is_the_one_judged_afresh(which, steps) -> None:
    fast, slow = DefectSpikeDetector(CONFIGS[which]), AlwaysJudged(CONFIGS[which])
    now = 0.0
    for kind, gap, good, reject in steps:
        now += gap
        if kind == "add":
            fast.add(t(now), good, reject)
            slow.add(t(now), good, reject)
            assert (fast.since, fast.last) == (slow.since, slow.last)
        else:
            assert fast.evaluate(t(now)) == slow.evaluate(t(now))
            assert fast.since == slow.since


@pytest.mark.parametrize(("config", "batches", "times"), [
    # The baseline loses its oldest batch while both windows stay as they were.
    (DefectSpikeConfig(significance=1.0, absolute_rate=None, window_parts=5, window_s=10,
                       baseline_window_s=60, baseline_min_parts=5),
     [(0, 5, 5), (40, 10, 0), (45, 1, 0), (46, 1, 0), (47, 1, 0), (48, 1, 0), (49, 1, 0)],
     [59.5, 60.5]),
    # The time window shrinks below min_parts (the spike ends) while the rest stays.
    (DefectSpikeConfig(significance=1.0, window_parts=50, window_s=10, baseline_window_s=600),
     [(0, 100, 0), (50, 0, 2), (51, 0, 2), (52, 0, 2), (53, 0, 2), (54, 0, 2)],
     [55, 60.5]),
])
def test_a_verdict_is_judged_again_when_only_one_window_moved(config, batches, times) -> None:
    fast, slow = DefectSpikeDetector(config), AlwaysJudged(config)
    for at, good, reject in batches:
        fast.add(t(at), good, reject)
        slow.add(t(at), good, reject)
    verdicts = [(fast.evaluate(t(x)), slow.evaluate(t(x))) for x in times]
    assert [f for f, _ in verdicts] == [s for _, s in verdicts]
    assert verdicts[0][0] != verdicts[1][0]  # the case is one where the verdict changes


def test_a_spike_after_a_steady_hour_begins_at_the_part_that_tips_it() -> None:
    detector, reference = DefectSpikeDetector(DefectSpikeConfig()), AlwaysJudged(
        DefectSpikeConfig())
    at = T0
    for second in range(4000):  # a good part a second, a tick in between: the shortcut's case
        at = t(second)
        for d in (detector, reference):
            d.add(at, 1, 0)
            d.evaluate(at + timedelta(seconds=0.5))
    assert detector._judged is not None and detector.since is None
    began = None
    for i in range(60):  # then every other part a reject
        at = t(4000 + i)
        for d in (detector, reference):
            d.add(at, i % 2, 1 - i % 2)
        if began is None and detector.since is not None:
            began = at
        assert detector.since == reference.since
    assert began is not None and detector.since == began


def test_the_duplicate_window_still_catches_reordered_repeats() -> None:
    from collector.sources.mqtt_json import REMEMBER_PER_TOPIC, _Recent

    recent = _Recent()
    pairs = [(t, t) for t in range(100, 100 + REMEMBER_PER_TOPIC)]
    assert all(recent.add(*p) for p in pairs)  # in order: the fast path
    assert not recent.add(*pairs[-1])  # the newest again
    assert not recent.add(*pairs[3])  # an older one again, out of order
    assert recent.add(50, 50)  # older than all, never seen: news (a late message)
    assert not recent.add(50, 50)
    assert recent.add(10_000, 1)
    # The ring is full: (50, 50) and (10_000, 1) pushed the two oldest out, and these two
    # the next two.
    assert recent.add(*pairs[0]) and recent.add(*pairs[1])
    assert not recent.add(*pairs[4])
    assert recent.add(-5, 2**64 - 1)  # before the epoch, the largest seq
    assert not recent.add(-5, 2**64 - 1)


def test_the_duplicate_window_does_not_match_astride_two_messages() -> None:
    from collector.sources.mqtt_json import _Recent

    recent = _Recent()
    assert recent.add(100, 50) and recent.add(60, 1)
    # Packed, (50, 60) is the second half of the first pair and the first half of the next.
    assert recent.add(50, 60)
    assert not recent.add(50, 60)
    assert not recent.add(60, 1) and not recent.add(100, 50)


def test_the_duplicate_window_searches_only_what_was_written() -> None:
    from collector.sources.mqtt_json import _Recent

    recent = _Recent()
    assert recent.add(5, 5)
    assert recent.add(0, 0)  # packed, all zero bytes: as the ring's unwritten part
    assert not recent.add(0, 0)
