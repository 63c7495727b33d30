"""What every bench script shares: a quiet machine, TCP_NODELAY, clean broker sessions,
interleaved repetitions, statistics, CPU/RSS readings, tables and the JSON record.

A figure module exposes `main(argv: list[str] | None = None) -> dict` and calls
`record(figure_id, data)` for what it measured; `python -m bench` writes every record to
bench/results/latest.json. Nothing here asserts a timing: the scripts print, people judge.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

RESULTS = Path(__file__).resolve().parent / "results"
FORCE_ENV = "LINEMON_BENCH_FORCE"
QUICK_ENV = "LINEMON_BENCH_QUICK"
RECORDS: dict[str, Any] = {}
T = TypeVar("T")


# -- a quiet machine ---------------------------------------------------------------------

def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs from the first line of /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user/nice
    return total - idle, total


def busy_fraction(window_s: float = 2.0) -> float:
    """Share of all CPUs busy (0..1) over `window_s`, this process's own wait included."""
    busy0, total0 = _cpu_ticks()
    time.sleep(window_s)
    busy1, total1 = _cpu_ticks()
    return (busy1 - busy0) / max(1, total1 - total0)


def load_per_cpu() -> float:
    return os.getloadavg()[0] / (os.cpu_count() or 1)


def forced() -> bool:
    return os.environ.get(FORCE_ENV, "") not in ("", "0")


def refuse_if_loaded(max_busy: float = 0.35, figure: str = "bench",
                     max_load: float | None = None) -> None:
    """Exit (status 3) when the machine is already busy: CPU busy fraction over ~2 s above
    `max_busy`, or the 1-minute load average per CPU above `max_load` (default: 2 x max_busy,
    the load average trails by a minute). LINEMON_BENCH_FORCE=1 (`--force`) only warns."""
    busy = busy_fraction()
    load = load_per_cpu()
    limit = 2 * max_busy if max_load is None else max_load
    if busy <= max_busy and load <= limit:
        return
    why = (f"{figure}: machine already loaded (CPU {busy:.0%} busy over 2 s, limit "
           f"{max_busy:.0%}; 1-min load {load:.2f}/CPU, limit {limit:.2f}); figures would "
           f"measure the other work. Wait, or set {FORCE_ENV}=1 / --force to run anyway.")
    if forced():
        print(f"WARNING (forced) {why}", file=sys.stderr)
        return
    print(f"REFUSED {why}", file=sys.stderr)
    raise SystemExit(3)


# -- TCP_NODELAY -------------------------------------------------------------------------

def nodelay(sock: Any) -> None:
    """TCP_NODELAY on a socket (or a socket-like with `.fileno()`); silently skips
    non-TCP sockets. Nagle + delayed ACK otherwise add a 40 ms tail to small writes."""
    raw = sock if isinstance(sock, socket.socket) else socket.socket(fileno=sock.fileno())
    try:
        if raw.family in (socket.AF_INET, socket.AF_INET6) and raw.type == socket.SOCK_STREAM:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    finally:
        if raw is not sock:
            raw.detach()  # the fd belongs to its owner


def has_nodelay(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


def nodelay_paho(client: Any) -> None:
    """TCP_NODELAY on every socket a paho-mqtt 2.x client opens (paho does not set it).
    Chains an `on_socket_open` already set. Call before `connect()`."""
    previous = client.on_socket_open

    def on_socket_open(cl: Any, userdata: Any, sock: Any) -> None:
        raw = getattr(sock, "_socket", sock)  # paho's WebSocket wrapper keeps the TCP one
        if hasattr(raw, "fileno"):
            nodelay(raw)
        if previous is not None:
            previous(cl, userdata, sock)

    client.on_socket_open = on_socket_open
    if client.socket() is not None:  # already connected
        nodelay(client.socket())


def nodelay_transport(transport: Any) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        nodelay(sock)


def nodelay_asyncua() -> None:
    """TCP_NODELAY on asyncua client and server sockets. asyncio's selector transports
    already set it on TCP sockets (Python >= 3.6, `base_events._set_nodelay`); this makes
    it explicit by wrapping both protocols' `connection_made`, idempotently."""
    from asyncua.client.ua_client import UASocketProtocol
    from asyncua.server.binary_server_asyncio import OPCUAProtocol

    for cls in (UASocketProtocol, OPCUAProtocol):
        original = cls.connection_made
        if getattr(original, "_bench_nodelay", False):
            continue

        def connection_made(self: Any, transport: Any, _orig: Any = original) -> None:
            nodelay_transport(transport)
            _orig(self, transport)

        connection_made._bench_nodelay = True  # type: ignore[attr-defined]
        cls.connection_made = connection_made  # type: ignore[method-assign]


# -- broker sessions ---------------------------------------------------------------------

def purge_sessions(host: str, port: int, client_ids: Iterable[str],
                   timeout_s: float = 5.0) -> None:
    """Remove persistent sessions (and their queued messages) of `client_ids` from the
    broker: connect each with MQTT 5 clean start and session expiry 0, then disconnect.
    A broker cannot list sessions, so pass every id a run used. Retained messages are not
    touched (clear those by publishing an empty retained payload)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    for cid in client_ids:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid,
                             protocol=mqtt.MQTTv5)
        nodelay_paho(client)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        client.connect(host, port, keepalive=10, clean_start=True, properties=props)
        client.loop_start()
        deadline = time.monotonic() + timeout_s
        while not client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.01)
        connected = client.is_connected()
        client.disconnect()
        client.loop_stop()
        if not connected:
            raise TimeoutError(f"purge_sessions: {cid!r} could not connect to {host}:{port}")


# -- statistics --------------------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, q in 0..1 (p999 is q=0.999)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass(frozen=True)
class Stats:
    n: int
    median: float
    min: float
    max: float
    p50: float
    p99: float
    p999: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        vals = list(values)
        return cls(n=len(vals), median=statistics.median(vals), min=min(vals), max=max(vals),
                   p50=percentile(vals, 0.5), p99=percentile(vals, 0.99),
                   p999=percentile(vals, 0.999))

    def spread(self, fmt: str = "{:.3g}") -> str:
        """`median (min..max)`, the way every table shows a repeated figure."""
        return f"{fmt.format(self.median)} ({fmt.format(self.min)}..{fmt.format(self.max)})"

    def as_dict(self) -> dict[str, float]:
        return {"n": self.n, "median": self.median, "min": self.min, "max": self.max,
                "p50": self.p50, "p99": self.p99, "p999": self.p999}


def interleave(reps: int, cases: dict[str, Callable[[], T]],
               between: Callable[[], None] | None = None) -> dict[str, list[T]]:
    """Run the cases A, B, A, B, ... `reps` times each (so drift hits every case alike);
    `between` runs before every single run (purge sessions, drop caches...)."""
    results: dict[str, list[T]] = {name: [] for name in cases}
    for _ in range(reps):
        for name, case in cases.items():
            if between is not None:
                between()
            results[name].append(case())
    return results


async def interleave_async(reps: int, cases: dict[str, Callable[[], Any]],
                           between: Callable[[], Any] | None = None) -> dict[str, list[Any]]:
    """`interleave` for coroutine functions (and an optional async or sync `between`)."""
    results: dict[str, list[Any]] = {name: [] for name in cases}
    for _ in range(reps):
        for name, case in cases.items():
            if between is not None:
                done = between()
                if hasattr(done, "__await__"):
                    await done
            results[name].append(await case())
    return results


# -- process readings --------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int | None = None) -> float:
    """User+system CPU seconds of a process (all its threads); of this one when None."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def steal_seconds() -> float:
    """CPU seconds the hypervisor took from this VM, all CPUs (/proc/stat's steal)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()  # "cpu user nice system idle iowait irq softirq steal"
    return int(fields[8]) / _TICK


def thread_cpu_seconds() -> float:
    """CPU seconds of the calling thread only."""
    return time.thread_time()


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size now (not the peak)."""
    statm = Path(f"/proc/{pid or 'self'}/statm").read_text().split()
    return int(statm[1]) * _PAGE


def quick() -> bool:
    """`python -m bench --quick`: fewer, shorter reps for development, never for figures."""
    return os.environ.get(QUICK_ENV, "") not in ("", "0")


def machine() -> dict[str, Any]:
    """nproc, CPU model, memory: the line every figure table is read against."""
    model = next((line.split(":", 1)[1].strip()
                  for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown")
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    return {"nproc": os.cpu_count(), "cpu": model, "mem_gib": round(mem_kb / 2**20, 1),
            "python": sys.version.split()[0]}


# -- output ------------------------------------------------------------------------------

def print_table(title: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells if i < len(r)) for i in range(len(header))]
    print(f"\n{title}")
    for i, row in enumerate(cells):
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
        if i == 0:
            print("  " + "  ".join("-" * w for w in widths))
    sys.stdout.flush()


def record(figure_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """Keep a figure's JSON for bench/results/latest.json (written by `python -m bench`)
    and print it as one JSON line; returns `data`."""
    RECORDS[figure_id] = data
    print(f"JSON {figure_id} " + json.dumps(data, default=str, sort_keys=True))
    return data


def write_results(path: Path | None = None) -> Path:
    target = path or RESULTS / "latest.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "figures": RECORDS}
    target.write_text(json.dumps(payload, indent=2, default=str, sort_keys=True) + "\n")
    return target


async def poll_until(cond: Callable[[], bool], timeout_s: float, every_s: float = 0.002) -> bool:
    """Poll a counter-like condition (no event to wait on); False on timeout."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every_s)
    return True
