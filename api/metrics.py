"""Prometheus metrics, read from linemon's live counters at scrape time.

A custom collector on a per-app registry (not prometheus-client's global one): nothing
is copied into metric objects between scrapes, and two apps in one process (tests, or
several plants) never clash over metric names.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from api.auth import AuthThrottle
from api.live_hub import LiveHub
from collector.historian.historian import Historian
from linemon.model import AlertState, MachineState, Severity
from linemon.roles import Runtime


class LinemonCollector(Collector):
    """`hub` is None in an engine process, which serves no boards."""

    def __init__(self, linemon: Runtime, hub: LiveHub | None, throttle: AuthThrottle) -> None:
        self.linemon, self.hub, self.throttle = linemon, hub, throttle

    def collect(self) -> Iterator[Metric]:
        yield from self._sources()
        yield from self._historian()
        yield from self._engine()
        yield from self._api()

    def _sources(self) -> Iterator[Metric]:
        label = ["source"]
        connected = GaugeMetricFamily("linemon_source_connected", "1 while connected", labels=label)
        counters = {
            "received": "samples received", "emitted": "samples passed to the engine",
            "duplicates": "duplicate samples dropped", "reconnects": "reconnect attempts",
            "slow_decodes": "OPC-UA Publish responses decoded by asyncua's generic decoder"}
        families = {name: CounterMetricFamily(f"linemon_source_{name}", doc, labels=label)
                    for name, doc in counters.items()}
        rejected = CounterMetricFamily("linemon_source_rejected", "payloads refused, by reason",
                                       labels=["source", "reason"])
        for source in self.linemon.sources:
            stats = source.stats
            connected.add_metric([source.name], 1.0 if stats.connected else 0.0)
            for name, family in families.items():
                family.add_metric([source.name], float(getattr(stats, name)))
            for reason, n in stats.rejected.items():
                rejected.add_metric([source.name, reason], float(n))
        yield connected
        yield from families.values()
        yield rejected

    def _historian(self) -> Iterator[Metric]:
        historian = self.linemon.historian
        if not isinstance(historian, Historian):  # an API process reads; the engines write
            return
        counters = historian.counters()
        spool, forwarder = counters["spool"], counters["forwarder"]
        for name in ("depth", "bytes", "quarantined"):
            yield GaugeMetricFamily(f"linemon_spool_{name}", f"spool {name} now",
                                    value=float(spool[name]))
        yield GaugeMetricFamily("linemon_spool_over_budget", "1 when the spool drops samples",
                                value=1.0 if spool["over_budget"] else 0.0)
        for name in ("appended", "acked", "commits"):
            yield CounterMetricFamily(f"linemon_spool_{name}", f"spool records {name}",
                                      value=float(spool[name]))
        dropped = CounterMetricFamily("linemon_spool_dropped", "records dropped over budget",
                                      labels=["kind"])
        for kind, n in spool["dropped"].items():
            dropped.add_metric([kind], float(n))
        yield dropped
        for name in ("written", "replayed", "write_requests", "failed_requests", "quarantined"):
            yield CounterMetricFamily(f"linemon_historian_{name}", f"forwarder {name}",
                                      value=float(forwarder[name]))
        yield CounterMetricFamily("linemon_historian_write_seconds",
                                  "wall seconds in store write requests (/ write_requests: "
                                  "the mean write latency)",
                                  value=float(forwarder["write_seconds"]))
        rejected = CounterMetricFamily("linemon_historian_rejected", "records it cannot encode",
                                       labels=["kind"])
        for kind, n in counters["rejected"].items():
            rejected.add_metric([kind], float(n))
        yield rejected
        yield CounterMetricFamily("linemon_spool_write_failures",
                                  "spool writes that failed and were retried",
                                  value=float(counters["spool_write_failures"]))
        yield GaugeMetricFamily("linemon_historian_ok", "1 without an alarm",
                                value=1.0 if historian.health().get("ok", True) else 0.0)

    def _engine(self) -> Iterator[Metric]:
        engine = self.linemon.engine
        state = GaugeMetricFamily("linemon_machine_state", "1 for the machine's current state",
                                  labels=["line", "machine", "state"])
        for line, machine, current in engine.states():
            for candidate in MachineState:
                state.add_metric([line, machine, candidate.value],
                                 1.0 if current is candidate else 0.0)
        yield state
        alerts = GaugeMetricFamily("linemon_alerts", "active alerts", labels=["state", "severity"])
        active = engine.alerts.active()
        for st in (AlertState.PENDING, AlertState.FIRING):
            for sev in Severity:
                n = sum(1 for a in active if a.state is st and a.severity is sev)
                alerts.add_metric([st.value, sev.value], float(n))
        yield alerts
        if self.hub is None:
            return
        events = CounterMetricFamily("linemon_engine_events", "engine events seen by the API",
                                     labels=["kind"])
        for kind, n in sorted(self.hub.events_total.items()):
            events.add_metric([kind], float(n))
        yield events

    def _api(self) -> Iterator[Metric]:
        yield CounterMetricFamily("linemon_api_auth_failures", "requests with an unknown key",
                                  value=float(self.throttle.failed_total))
        yield CounterMetricFamily("linemon_api_auth_throttled", "requests refused with 429",
                                  value=float(self.throttle.refused_total))
        if self.hub is None:
            return
        yield GaugeMetricFamily("linemon_live_subscribers", "open WebSocket boards",
                                value=float(self.hub.subscribers))
        yield CounterMetricFamily("linemon_live_dropped_changes",
                                  "changes a slow board did not get", value=float(
                                      self.hub.dropped_changes))


def registry_for(linemon: Runtime, hub: LiveHub | None, throttle: AuthThrottle
                 ) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(LinemonCollector(linemon, hub, throttle))
    return registry
