"""The simulated machines' OPC-UA server (asyncua).

Address space: Objects/<Site>/<Line>/<Machine>/<Tag>, BrowseNames are the ids; every tag has a
string NodeId `ns=<idx>;s=<line>.<machine>.<Tag>` in the namespace `urn:linemon:simulator`
(configurable). Each write carries SourceTimestamp (and ServerTimestamp) = simulated time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from asyncua import Node, Server, ua

from simulators.opcua.security import OpcUaSecurity, PasswordUsers, TrustList
from simulators.signals import SIGNALS, Change, SignalSpec, Value, to_datetime

log = logging.getLogger(__name__)

_VARIANT = {
    "string": ua.VariantType.String,
    "int32": ua.VariantType.Int32,
    "uint32": ua.VariantType.UInt32,
    "double": ua.VariantType.Double,
}
_UNECE = {"degC": ("CEL", "°C", "degree Celsius"), "bar": ("BAR", "bar", "bar")}
_UNITS_URI = "http://www.opcfoundation.org/UA/units/un/cefact"


@dataclass(frozen=True)
class ServedLine:
    id: str
    name: str
    machines: tuple[tuple[str, str], ...]  # (machine id, display name)


class OpcUaServer:
    """Sink: serves the tags of the machines it was built with."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        namespace_uri: str,
        site: str,
        lines: Sequence[ServedLine],
        snapshot: Iterable[Change] = (),
        security: OpcUaSecurity | None = None,
        server_name: str = "linemon simulator",
    ) -> None:
        self.host = host
        self.port = port
        self.namespace_uri = namespace_uri
        self.site = site
        self.lines = list(lines)
        self.security = security
        self.server_name = server_name
        self.endpoint = f"opc.tcp://{host}:{port}/"
        self.namespace_index: int | None = None
        self._initial = {(c.machine, c.signal): c for c in snapshot}
        self._nodes: dict[tuple[str, str], tuple[ua.NodeId, ua.VariantType]] = {}
        self._pending: list[Change] = []
        self._server: Server | None = None

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        sec = self.security
        users = PasswordUsers(sec.users if sec else {}, sec.allow_anonymous if sec else True)
        server = Server(user_manager=users)
        await server.init()
        # no wall-clock writer task: the tags carry simulated time, and stop() stays instant
        server.disable_clock(True)
        server.set_endpoint(self.endpoint)
        server.set_server_name(self.server_name)
        if sec is None:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
            server.set_identity_tokens([ua.AnonymousIdentityToken])
        else:
            await sec.ensure_server_certificate()
            await server.set_application_uri(sec.application_uri)
            await server.load_certificate(str(sec.server_certificate_path))
            await server.load_private_key(str(sec.server_key_path))
            server.set_security_policy(sec.policy_types())
            tokens: list[type] = []
            if sec.allow_anonymous:
                tokens.append(ua.AnonymousIdentityToken)
            if sec.users:
                tokens.append(ua.UserNameIdentityToken)
            server.set_identity_tokens(tokens)
            server.set_certificate_validator(TrustList(sec.trusted_client_certs))
        self.namespace_index = await server.register_namespace(self.namespace_uri)
        await self._build(server)
        await server.start()
        self._server = server
        log.info("OPC-UA simulator serving %d machines at %s", len(self._nodes) // 8, self.endpoint)

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop()

    # -- Sink ------------------------------------------------------------------

    def publish(self, t_ms: int, changes: list[Change]) -> None:
        self._pending.extend(c for c in changes if (c.machine, c.signal) in self._nodes)

    def link(self, t_ms: int, up: bool) -> None:
        """The scripted MQTT outages do not concern OPC-UA."""

    async def flush(self) -> None:
        if self._server is None:
            self._pending.clear()
            return
        pending, self._pending = self._pending, []
        for change in pending:
            node_id, vtype = self._nodes[(change.machine, change.signal)]
            await self._server.write_attribute_value(node_id, _datavalue(change, vtype))

    def node_id(self, machine: str, signal: str) -> ua.NodeId:
        return self._nodes[(machine, signal)][0]

    # -- address space ---------------------------------------------------------

    async def _build(self, server: Server) -> None:
        idx = self.namespace_index
        assert idx is not None
        site = await server.nodes.objects.add_folder(
            ua.NodeId(self.site, idx), ua.QualifiedName(self.site, idx)
        )
        for line in self.lines:
            line_node = await site.add_object(
                ua.NodeId(line.id, idx), ua.QualifiedName(line.id, idx)
            )
            if line.name:
                await _display(line_node, line.name)
            for machine_id, machine_name in line.machines:
                machine = await line_node.add_object(
                    ua.NodeId(f"{line.id}.{machine_id}", idx), ua.QualifiedName(machine_id, idx)
                )
                if machine_name:
                    await _display(machine, machine_name)
                for spec in SIGNALS:
                    await self._add_tag(machine, line.id, machine_id, spec)

    async def _add_tag(self, parent: Node, line: str, machine: str, spec: SignalSpec) -> None:
        idx = self.namespace_index
        assert idx is not None
        vtype = _VARIANT[spec.kind]
        node_id = ua.NodeId(f"{line}.{machine}.{spec.tag}", idx)
        initial = self._initial.get((machine, spec.name))
        value: Value = initial.value if initial else ("" if spec.kind == "string" else 0)
        var = await parent.add_variable(
            node_id, ua.QualifiedName(spec.tag, idx), ua.Variant(_cast(value, vtype), vtype)
        )
        if spec.unit:
            code, display, description = _UNECE.get(spec.unit, ("", spec.unit, spec.unit))
            unit_id = _unit_id(code) if code else -1
            eu = ua.EUInformation(
                NamespaceUri=_UNITS_URI,
                UnitId=unit_id,
                DisplayName=ua.LocalizedText(display),
                Description=ua.LocalizedText(description),
            )
            await var.add_property(
                ua.NodeId(f"{line}.{machine}.{spec.tag}.EngineeringUnits", idx),
                ua.QualifiedName("EngineeringUnits", 0),
                ua.Variant(eu, ua.VariantType.ExtensionObject),
                datatype=ua.NodeId(ua.ObjectIds.EUInformation),
            )
        self._nodes[(machine, spec.name)] = (node_id, vtype)
        if initial is not None:
            await var.write_value(_datavalue(initial, vtype))


def _datavalue(change: Change, vtype: ua.VariantType) -> ua.DataValue:
    ts = to_datetime(change.t_ms)
    return ua.DataValue(
        Value=ua.Variant(_cast(change.value, vtype), vtype),
        StatusCode=ua.StatusCode(ua.StatusCodes.Good),
        SourceTimestamp=ts,
        ServerTimestamp=ts,
    )


def _cast(value: Value, vtype: ua.VariantType) -> Value:
    if vtype is ua.VariantType.Double:
        return float(value)
    if vtype in (ua.VariantType.Int32, ua.VariantType.UInt32):
        return int(value)
    return str(value)


def _unit_id(code: str) -> int:
    unit = 0
    for char in code:
        unit = (unit << 8) | ord(char)
    return unit


async def _display(node: Node, name: str) -> None:
    await node.write_attribute(
        ua.AttributeIds.DisplayName, ua.DataValue(ua.Variant(ua.LocalizedText(name)))
    )
