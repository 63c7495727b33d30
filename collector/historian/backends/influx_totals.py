"""Downtime totals and time in state on InfluxDB (totals.py): pivots of just the fields
the sums need, added up in Python off the event loop.

Flux cannot group by a field's value without the pivot, and grouping after the pivot costs
more than the pivot; the pivot itself costs influxd ~80 ms of CPU per field for a month
of stops, so each total reads only its own fields: Pareto the reason codes (each reason's
first stop's text is read after, `_first_texts`), MTBF/MTTR the micro-stop flag. The
category is read apart (`_categories`): all but a few stops are unplanned.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from linemon.model import DowntimeCategory

from ..query import StateRow
from ..schema import category_of
from ..totals import MachineTotal, ReasonSum, TotalReads, add_up_machines, add_up_reasons
from .influx_query import BEGINNING, PIVOT, any_machine, ns_of

T = TypeVar("T")
UNPLANNED = DowntimeCategory.UNPLANNED

# The fields of a stop each total reads, after _time, line and machine.
REASON_COLUMNS = ["_time", "line", "machine", "id", "end_ns", "reason_code",
                  "manual_reason_code"]
MACHINE_COLUMNS = ["_time", "line", "machine", "id", "end_ns", "micro_stop"]


def _fields(columns: list[str]) -> str:
    return " and (" + " or ".join(f'r._field == "{f}"' for f in columns[3:]) + ")"


def _keep(columns: list[str]) -> str:
    return f"|> keep(columns: {json.dumps(columns)})"


class InfluxTotals(TotalReads):
    """TotalReads on InfluxDB; InfluxStore brings flux_cells, and InfluxQueryMixin the
    downtime filter (_downtime_flux) and _range."""

    cfg: Any

    async def flux_cells(self, query: str, params: dict[str, Any], columns: Sequence[str],
                         then: Callable[[list[tuple[str, ...]]], T]) -> T:
        raise NotImplementedError

    def _downtime_flux(self, start_ns: int, end_ns: int, line: str | None,
                       machine: str | None, fields: str = "", *,
                       machines: Sequence[str] | None = None) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def _range(self, start: datetime, end: datetime) -> dict[str, Any]:
        raise NotImplementedError

    async def _by_reason(self, start_ns: int, end_ns: int, now_ns: int, line: str | None,
                         machine: str | None, category: DowntimeCategory | None
                         ) -> dict[str | None, tuple[int, int, str | None]]:
        cats = (None if category is None else
                await self._categories(start_ns, end_ns, line, machine, None))
        q, params = self._downtime_flux(start_ns, end_ns, line, machine,
                                        _fields(REASON_COLUMNS))

        def add_up(rows: list[tuple[str, ...]]) -> dict[str | None, ReasonSum[Any]]:
            return add_up_reasons(
                ((manual or code or None, ns_of(t), id_, int(end) if end else None,
                  (ln, m, bool(manual))) for t, ln, m, id_, end, code, manual in rows
                 if id_ and (cats is None or cats.get((ln, m, t), UNPLANNED) is category)),
                now_ns)

        sums = await self.flux_cells(q + PIVOT + _keep(REASON_COLUMNS), params, REASON_COLUMNS,
                                     add_up)
        texts = await self._first_texts([(*s.first, s.first_ns) for s in sums.values()])
        return {code: (s.count, s.duration_us, texts.get((*s.first, s.first_ns)))
                for code, s in sums.items()}

    async def _by_machine(self, start_ns: int, end_ns: int, now_ns: int,
                          machines: Sequence[str]) -> list[MachineTotal]:
        cats = await self._categories(start_ns, end_ns, None, None, machines)
        q, params = self._downtime_flux(start_ns, end_ns, None, None, _fields(MACHINE_COLUMNS),
                                        machines=machines)

        def add_up(rows: list[tuple[str, ...]]) -> list[MachineTotal]:
            return add_up_machines(
                ((m, cats.get((ln, m, t), UNPLANNED), micro == "true", ns_of(t),
                  int(end) if end else None) for t, ln, m, id_, end, micro in rows if id_),
                now_ns)

        return await self.flux_cells(q + PIVOT + _keep(MACHINE_COLUMNS), params,
                                     MACHINE_COLUMNS, add_up)

    async def _categories(self, start_ns: int, end_ns: int, line: str | None,
                          machine: str | None, machines: Sequence[str] | None
                          ) -> dict[tuple[str, str, str], DowntimeCategory]:
        """The stops that are not plainly unplanned, by (line, machine, raw _time)."""
        q, params = self._downtime_flux(
            start_ns, end_ns, line, machine,
            ' and r._field == "category" and r._value != "unplanned"', machines=machines)
        cols = ["line", "machine", "_time", "_value"]
        rows = await self.flux_cells(q + _keep(cols), params, cols, list)
        return {(ln, m, t): category_of(v or None) for ln, m, t, v in rows}

    async def _first_texts(self, stops: list[tuple[str, str, bool, int]]
                           ) -> dict[tuple[str, str, bool, int], str | None]:
        """The reason text in force of each (line, machine, coded by a person, start_ns)
        stop: one read of each point in one query."""
        stops = [s for s in stops if s[1]]
        if not stops:
            return {}
        params: dict[str, Any] = {"p_events": self.cfg.downsampled_bucket}
        parts = []
        for i, (_, machine, _, start_ns) in enumerate(stops):
            params |= {f"p_m{i}": machine, f"p_t{i}": start_ns, f"p_u{i}": start_ns + 1}
            parts.append(
                f"from(bucket: p_events) |> range(start: time(v: p_t{i}), stop: time(v: p_u{i}))"
                f'\n|> filter(fn: (r) => r._measurement == "downtime" and r.machine == p_m{i} and '
                '(r._field == "reason_text" or r._field == "manual_reason_text"))\n'
                f'|> yield(name: "s{i}")')
        cols = ["line", "machine", "_time", "_field", "_value"]
        fields: dict[tuple[str, str, int], dict[str, str]] = {}
        for ln, m, t, field, value in await self.flux_cells("\n".join(parts), params, cols,
                                                            list):
            fields.setdefault((ln, m, ns_of(t)), {})[field] = value
        return {s: fields.get((s[0], s[1], s[3]), {}).get(
                    "manual_reason_text" if s[2] else "reason_text") or None for s in stops}

    async def _state_changes(self, machines: Sequence[str], start: datetime, end: datetime
                             ) -> dict[str, tuple[StateRow | None, list[StateRow]]]:
        where, params = any_machine(machines)
        params |= self._range(start, end)
        where = ('|> filter(fn: (r) => r._measurement == "state" and r._field == "state")\n'
                 + where)
        cols = ["machine", "_time", "_value"]
        lasts = await self.flux_cells(  # pushed down to storage: one row per series
            f"from(bucket: p_events) |> range(start: {BEGINNING}, stop: p_start)\n"
            + where + "|> last()", params, cols, list)
        rows = await self.flux_cells(
            "from(bucket: p_events) |> range(start: p_start, stop: p_stop)\n" + where
            + '|> keep(columns: ["_time", "_value", "line", "machine"])', params, cols,
            lambda rows: [(m, StateRow(ns_of(t), v)) for m, t, v in rows if v])
        out: dict[str, tuple[StateRow | None, list[StateRow]]] = {}
        for machine, t, state in lasts:  # the latest; at a tie, the first (state_timeline)
            if not state:
                continue
            prior = out.get(machine, (None, []))[0]
            if prior is None or ns_of(t) > prior.ts_ns:
                out[machine] = (StateRow(ns_of(t), state), [])
        for machine, row in rows:
            out.setdefault(machine, (None, []))[1].append(row)
        return out
