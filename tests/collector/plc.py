"""A small OPC-UA server the tests write to directly (asyncua), for exact sequences of values.

It records what clients ask of it (CreateMonitoredItems parameters, Read sizes), so a test
can check what reached the server, not only what came back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.crypto import cert_gen
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.support.services import free_port

NAMESPACE = "urn:linemon:test-plc"
TAGS = {"StateCode": ua.VariantType.Int32, "GoodCount": ua.VariantType.UInt32,
        "Temperature": ua.VariantType.Double, "Seq": ua.VariantType.UInt32}


def node(machine: str, tag: str) -> str:
    return f"nsu={NAMESPACE};s={machine}.{tag}"


@dataclass
class TestPlc:
    machines: tuple[str, ...] = ("m-1",)
    policies: tuple[ua.SecurityPolicyType, ...] = (ua.SecurityPolicyType.NoSecurity,)
    cert_dir: Path | None = None
    port: int = field(default_factory=free_port)
    monitored_requests: list[ua.MonitoredItemCreateRequest] = field(default_factory=list)
    read_sizes: list[int] = field(default_factory=list)
    server: Server | None = None

    __test__ = False  # not a pytest test class

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/"

    @property
    def certificate(self) -> Path:
        assert self.cert_dir is not None
        return self.cert_dir / "plc-cert.der"

    async def start(self) -> None:
        server = Server()
        await server.init()
        server.disable_clock(True)
        server.set_endpoint(self.endpoint)
        server.set_security_policy(list(self.policies))
        if self.cert_dir is not None:
            self.cert_dir.mkdir(parents=True, exist_ok=True)
            key = self.cert_dir / "plc-key.pem"
            await cert_gen.setup_self_signed_certificate(
                key, self.certificate, "urn:linemon:test-plc", "localhost",
                [ExtendedKeyUsageOID.SERVER_AUTH], {"organizationName": "test plc"})
            await server.set_application_uri("urn:linemon:test-plc")
            await server.load_certificate(str(self.certificate))
            await server.load_private_key(str(key))
        idx = await server.register_namespace(NAMESPACE)
        for machine in self.machines:
            folder = await server.nodes.objects.add_object(ua.NodeId(machine, idx), machine)
            for tag, vtype in TAGS.items():
                initial = 0.0 if vtype is ua.VariantType.Double else 0
                await folder.add_variable(ua.NodeId(f"{machine}.{tag}", idx), tag,
                                          ua.Variant(initial, vtype))
        self._idx = idx
        self._watch(server)
        await server.start()
        self.server = server

    def _watch(self, server: Server) -> None:
        subscriptions = server.iserver.subscription_service
        create = subscriptions.create_monitored_items
        attributes = server.iserver.attribute_service
        read = attributes.read

        async def recording_create(params: ua.CreateMonitoredItemsParameters) -> Any:
            self.monitored_requests.extend(params.ItemsToCreate)
            return await create(params)

        def recording_read(params: ua.ReadParameters) -> Any:
            self.read_sizes.append(len(params.NodesToRead))
            return read(params)

        subscriptions.create_monitored_items = recording_create  # type: ignore[method-assign]
        attributes.read = recording_read  # type: ignore[method-assign]

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None

    async def write(self, machine: str, tag: str, value: float | int,
                    at: datetime | None = None) -> None:
        assert self.server is not None
        at = at or datetime.now(UTC)
        vtype = TAGS[tag]
        dv = ua.DataValue(ua.Variant(value, vtype), StatusCode=ua.StatusCode(ua.StatusCodes.Good),
                          SourceTimestamp=at, ServerTimestamp=at)
        await self.server.write_attribute_value(ua.NodeId(f"{machine}.{tag}", self._idx), dv)

    async def write_bad(self, machine: str, tag: str) -> None:
        assert self.server is not None
        now = datetime.now(UTC)
        dv = ua.DataValue(StatusCode=ua.StatusCode(ua.StatusCodes.BadCommunicationError),
                          SourceTimestamp=now, ServerTimestamp=now)
        await self.server.write_attribute_value(ua.NodeId(f"{machine}.{tag}", self._idx), dv)

    def monitored_item_count(self) -> int:
        """Monitored items alive on the server, over all sessions and subscriptions."""
        assert self.server is not None
        return monitored_item_count(self.server)


def monitored_item_count(server: Server) -> int:
    # asyncua's server keeps them per subscription; no public counter exists.
    subs = server.iserver.subscription_service.subscriptions.values()
    return sum(len(sub.monitored_item_srv._monitored_items) for sub in subs)
