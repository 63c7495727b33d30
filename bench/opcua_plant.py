"""A plain asyncua server with the tags of a generated plant (bench/rig.py), changing at a
fixed rate: the OPC-UA side of figures (2) and (6), run as its own process.

    python -m bench.opcua_plant --machines 500 --port 4841 --tick-ms 500

Every tick each machine's process values and good count change; state, fault code and
reject count stay (a running plant), so 7 of every machine's 10 tags notify per tick.
Prints `ready opc.tcp://...` once it serves, then runs until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
from datetime import UTC, datetime

from asyncua import Server, ua

from bench.harness import nodelay_asyncua
from bench.rig import NAMESPACE, TAGS, machine_ids

CONSTANT = {"state_code": 1, "fault_code": 0, "reject_count": 0}
VARIANT = {"auto": ua.VariantType.Int32, "int": ua.VariantType.UInt32,
           "float": ua.VariantType.Double}


async def serve(machines: int, port: int, tick_ms: int) -> None:
    nodelay_asyncua()
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    idx = await server.register_namespace(NAMESPACE)
    changing: list[tuple[ua.NodeId, str, ua.VariantType, int]] = []
    root = await server.nodes.objects.add_object(idx, "Bench")
    for n, (line, machine) in enumerate(machine_ids(machines)):
        obj = await root.add_object(ua.NodeId(f"{line}.{machine}", idx), machine)
        for name, kind in TAGS.values():
            vtype = VARIANT[kind]
            start: float | int = 0.0 if kind == "float" else CONSTANT.get(name, 0)
            var = await obj.add_variable(ua.NodeId(f"{line}.{machine}.{name}", idx), name,
                                         ua.Variant(start, vtype))
            if name not in CONSTANT:
                changing.append((var.nodeid, name, vtype, n))
    async with server:
        print(f"ready opc.tcp://127.0.0.1:{port}/ {len(changing)} changing of "
              f"{machines * len(TAGS)} tags", flush=True)
        tick = 0
        while True:
            started = asyncio.get_running_loop().time()
            tick += 1
            now = datetime.now(UTC)
            for i, (nodeid, name, vtype, n) in enumerate(changing):
                if i % 500 == 499:
                    await asyncio.sleep(0)  # let requests (new sessions, reads) in
                value: float | int = (tick if name == "good_count"
                                      else 50.0 + 10 * math.sin(tick / 7 + n))
                await server.write_attribute_value(
                    nodeid, ua.DataValue(ua.Variant(value, vtype), SourceTimestamp=now,
                                         ServerTimestamp=now))
            spent = asyncio.get_running_loop().time() - started
            await asyncio.sleep(max(0.0, tick_ms / 1000 - spent))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=500)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tick-ms", type=int, default=500)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    asyncio.run(serve(args.machines, args.port, args.tick_ms))


if __name__ == "__main__":
    main()
