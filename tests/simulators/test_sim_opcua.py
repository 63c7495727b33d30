"""What the OPC-UA server serves, read with a plain asyncua client, against the ground truth."""

from __future__ import annotations

import json

import pytest
from asyncua import Client, ua
from asyncua.crypto.security_policies import (
    SecurityPolicyAes256Sha256RsaPss,
    SecurityPolicyBasic256Sha256,
)

from simulators import OpcUaSecurity, SimulatedPlant, generate_client_certificate
from simulators.signals import iso_ms, to_ms
from tests.simulators.sim_helpers import wait_for

TAGS = {
    "State": ua.VariantType.String,
    "StateCode": ua.VariantType.Int32,
    "FaultCode": ua.VariantType.Int32,
    "GoodCount": ua.VariantType.UInt32,
    "RejectCount": ua.VariantType.UInt32,
    "Speed": ua.VariantType.Double,
    "Temperature": ua.VariantType.Double,
    "Pressure": ua.VariantType.Double,
}


class Recorder:
    def __init__(self) -> None:
        self.seen: dict[str, list[tuple[int, str]]] = {}

    def datachange_notification(self, node, value, data) -> None:
        stamp = iso_ms(to_ms(data.monitored_item.Value.SourceTimestamp))
        self.seen.setdefault(node.nodeid.Identifier, []).append((value, stamp))


def state_code_changes(truth: dict, machine: str) -> list[tuple[int, str]]:
    changes: list[tuple[int, str]] = []
    for interval in truth["machines"][machine]["intervals"]:
        if not changes or changes[-1][0] != interval["state_code"]:
            changes.append((interval["state_code"], interval["start"]))
    return changes


async def test_address_space_values_and_state_changes_match_truth(
    scripted, mosquitto, mqtt_recorder
):
    on_mqtt = mqtt_recorder("plant/+/+/good_count")
    plant = SimulatedPlant(
        scripted, speed=400, opcua_port=0, mqtt_host=mosquitto.host, mqtt_port=mosquitto.port
    )
    await plant.start()
    try:
        async with Client(plant.opcua_endpoint) as client:
            idx = await client.get_namespace_index("urn:linemon:simulator")
            recorder = Recorder()  # subscribe first: the scenario is already running
            sub = await client.create_subscription(10, recorder)
            state_nodes = [
                client.get_node(ua.NodeId(f"line-1.{m}.StateCode", idx))
                for m in ("press-1", "weld-1")
            ]
            await sub.subscribe_data_change(state_nodes, queuesize=10_000)

            path = [f"{idx}:test-plant", f"{idx}:line-1", f"{idx}:press-1"]
            press = await client.nodes.objects.get_child(path)
            tags = {(await n.read_browse_name()).Name: n for n in await press.get_children()}
            assert set(tags) == set(TAGS)
            for name, vtype in TAGS.items():
                assert await tags[name].read_data_type_as_variant_type() == vtype, name
                assert tags[name].nodeid == ua.NodeId(f"line-1.press-1.{name}", idx)
            eu = await (await tags["Temperature"].get_child("0:EngineeringUnits")).read_value()
            assert (eu.DisplayName.Text, eu.UnitId) == ("°C", 4408652)
            line = await client.nodes.objects.get_child(path[:2])
            names = {(await n.read_browse_name()).Name for n in await line.get_children()}
            assert names == {"press-1", "weld-1"}  # paint-1 and pack-1 are MQTT machines

            await plant.stop_machine("weld-1", reason=31, for_s=45)
            fault = client.get_node(ua.NodeId("line-1.weld-1.FaultCode", idx))
            state = client.get_node(ua.NodeId("line-1.weld-1.State", idx))
            assert (await fault.read_value(), await state.read_value()) == (31, "fault")

            await plant.wait_until_done()
            truth = plant.truth()

            for machine in ("press-1", "weld-1"):
                expected = state_code_changes(truth, machine)
                key = f"line-1.{machine}.StateCode"
                await wait_for(
                    lambda k=key, e=expected: recorder.seen.get(k, [None])[-1] == e[-1],
                    what=f"{machine} final state",
                )
                seen = recorder.seen[key]
                assert seen[0] in expected, (seen[0], expected)
                assert seen == expected[expected.index(seen[0]) :]
                assert len(seen) >= 2  # live changes, not only the value at subscription

            for machine in ("press-1", "weld-1"):
                counters = truth["machines"][machine]["counters"]
                good = client.get_node(ua.NodeId(f"line-1.{machine}.GoodCount", idx))
                reject = client.get_node(ua.NodeId(f"line-1.{machine}.RejectCount", idx))
                assert await good.read_value() == counters["good_count"] > 0
                assert await reject.read_value() == counters["reject_count"]
                stamp = (await good.read_data_value()).SourceTimestamp
                assert truth["start"] < iso_ms(to_ms(stamp)) <= truth["end"]
            assert truth["machines"]["press-1"]["counters"]["reject_count"] > 0
            for machine in ("paint-1", "pack-1"):  # the same plant also publishes over MQTT
                good = truth["machines"][machine]["counters"]["good_count"]
                topic = f"plant/line-1/{machine}/good_count"
                await wait_for(
                    lambda t=topic, g=good: (
                        [json.loads(m.payload)["value"] for m in on_mqtt.on(t)][-1:] == [g]
                    ),
                    what=f"{machine} good count on MQTT",
                )
            injected = [s for s in truth["machines"]["weld-1"]["stops"] if s["reason_code"] == 31]
            assert [(s["duration_s"], s["reason_text"]) for s in injected] == [
                (45.0, "Material shortage")
            ]
    finally:
        await plant.stop()


def secure_client(endpoint: str, cert, server_cert, policy=SecurityPolicyBasic256Sha256):
    client = Client(endpoint)
    client.application_uri = cert.application_uri
    return client, client.set_security(
        policy,
        certificate=str(cert.cert_path),
        private_key=str(cert.key_path),
        server_certificate=str(server_cert),
        mode=ua.MessageSecurityMode.SignAndEncrypt,
    )


async def test_secured_endpoint_accepts_trusted_client_and_refuses_others(tmp_path, scripted):
    trusted = generate_client_certificate(tmp_path / "clients", "trusted")
    stranger = generate_client_certificate(tmp_path / "clients", "stranger")
    security = OpcUaSecurity(
        cert_dir=tmp_path / "pki",
        policies=("Basic256Sha256", "Aes256_Sha256_RsaPss"),
        trusted_client_certs=(trusted.cert_path,),
        users={"operator": "s3cret"},
    )
    plant = SimulatedPlant(scripted, speed=60, opcua_port=0, opcua_security=security)
    await plant.start()
    try:
        assert plant.server_certificate_path is not None
        assert plant.server_certificate_path.exists()
        for policy in (SecurityPolicyBasic256Sha256, SecurityPolicyAes256Sha256RsaPss):
            client, setup = secure_client(
                plant.opcua_endpoint, trusted, plant.server_certificate_path, policy
            )
            await setup
            client.set_user("operator")
            client.set_password("s3cret")
            async with client:
                idx = await client.get_namespace_index(plant.namespace_uri)
                code = client.get_node(ua.NodeId("line-1.press-1.StateCode", idx))
                assert await code.read_value() in range(7)

        client, setup = secure_client(plant.opcua_endpoint, stranger, plant.server_certificate_path)
        await setup
        client.set_user("operator")
        client.set_password("s3cret")
        with pytest.raises(ua.UaStatusCodeError, match="BadCertificateUntrusted"):
            await client.connect()
        client.disconnect_socket()

        client, setup = secure_client(plant.opcua_endpoint, trusted, plant.server_certificate_path)
        await setup
        client.set_user("operator")
        client.set_password("wrong")
        with pytest.raises(ua.UaStatusCodeError, match="BadUserAccessDenied"):
            await client.connect()
        client.disconnect_socket()

        plain = Client(plant.opcua_endpoint)  # no security at all: no such endpoint
        with pytest.raises(ua.UaError):
            await plain.connect()
        plain.disconnect_socket()
    finally:
        await plant.stop()
