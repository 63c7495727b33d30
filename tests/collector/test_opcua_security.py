"""OPC-UA security: policies and modes, client certificate, server trust list, users."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.crypto import security_policies

from linemon.config import ConfigError
from simulators import OpcUaSecurity, SimulatedPlant, generate_client_certificate
from tests.collector.harness import Recorder, demo_machines, plant_config, source_named, supervised
from tests.collector.plc import TestPlc, node
from tests.support.plants import eventually, quiet_scenario

P = ua.SecurityPolicyType


def secured(endpoint: str, policy: str, mode: str, client: Any, trusted: list[Path],
            **extra: Any) -> dict[str, Any]:
    return {"kind": "opcua", "name": "plc", "endpoint": endpoint, "watchdog_interval_s": 1.0,
            "timeout_s": 3.0, **extra,
            "security": {"policy": policy, "mode": mode, "certificate": str(client.cert_path),
                         "private_key": str(client.key_path),
                         "trusted_server_certificates": [str(p) for p in trusted],
                         **extra.pop("security", {})}}


def plc_machine() -> list[dict[str, Any]]:
    return [{"id": "m-1", "source": "plc", "ideal_cycle_time_s": 1.0,
             "tags": {"state": {"node": node("m-1", "StateCode")}}}]


async def connects(source_config: dict[str, Any], machines: list[dict[str, Any]]) -> Recorder:
    source_config["name"] = "plc"
    for machine in machines:
        machine["source"] = "plc"
    source = source_named(plant_config([source_config], machines), "plc")
    recorder = Recorder()
    async with supervised(source, recorder):
        await eventually(lambda: recorder.samples, 15, f"data over {source_config['security']}")
    return recorder


async def test_secured_sessions_with_the_simulator(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    client = generate_client_certificate(tmp_path / "pki", "linemon")
    security = OpcUaSecurity(
        tmp_path / "server-pki", policies=("Basic256Sha256", "Aes256_Sha256_RsaPss"),
        modes=("Sign", "SignAndEncrypt"), users={"operator": "s3cret"},
        trusted_client_certs=(client.cert_path,))
    plant = SimulatedPlant(quiet_scenario(), opcua_port=0, opcua_security=security,
                           realtime_forever=True)
    await plant.start()
    assert plant.opcua_endpoint and plant.server_certificate_path
    monkeypatch.setenv("LINEMON_OPCUA_USER", "operator")
    monkeypatch.setenv("LINEMON_OPCUA_PASSWORD", "s3cret")
    login = {"username_env": "LINEMON_OPCUA_USER", "password_env": "LINEMON_OPCUA_PASSWORD"}
    trusted = [plant.server_certificate_path]
    try:
        for policy, mode in [("Basic256Sha256", "SignAndEncrypt"), ("Basic256Sha256", "Sign"),
                             ("Aes256_Sha256_RsaPss", "SignAndEncrypt"),
                             ("Aes256_Sha256_RsaPss", "Sign")]:
            recorder = await connects(
                secured(plant.opcua_endpoint, policy, mode, client, trusted, **login),
                demo_machines("plc-line1"))
            assert {s.machine for s in recorder.samples} == {"press-1", "weld-1"}

        monkeypatch.setenv("LINEMON_OPCUA_PASSWORD", "wrong")
        source = source_named(plant_config(
            [secured(plant.opcua_endpoint, "Basic256Sha256", "SignAndEncrypt", client, trusted,
                     **login)], [{**m, "source": "plc"} for m in demo_machines("plc-line1")]),
            "plc")
        async with supervised(source, Recorder()):
            await eventually(lambda: source.stats.last_error, 15, "the login to fail")
        assert "BadUserAccessDenied" in (source.stats.last_error or "")
        assert source.stats.gaps == [] and not source.stats.connected
    finally:
        await plant.stop()


async def test_only_a_trusted_server_certificate_is_accepted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    plc = TestPlc(policies=(P.Aes128Sha256RsaOaep_SignAndEncrypt, P.Aes128Sha256RsaOaep_Sign,
                            P.Basic256_SignAndEncrypt), cert_dir=tmp_path / "plc")
    await plc.start()
    client = generate_client_certificate(tmp_path / "pki", "linemon")
    stranger = generate_client_certificate(tmp_path / "stranger", "stranger").cert_path
    try:
        caplog.set_level(logging.ERROR, logger="linemon.supervisor")
        source = source_named(plant_config([secured(
            plc.endpoint, "Aes128_Sha256_RsaOaep", "SignAndEncrypt", client, [stranger])],
            plc_machine()), "plc")
        recorder = Recorder()
        async with supervised(source, recorder):
            await eventually(lambda: source.stats.last_error, 15, "the refusal")
        (line,) = [r.getMessage() for r in caplog.records if "refusing" in r.getMessage()]
        print(f"\n{line}")
        assert f"refusing {plc.endpoint}" in line
        assert "'O=test plc" in line and "SHA-1 thumbprint" in line
        assert "not in security.trusted_server_certificates" in line
        assert "does not trust on first use" in line
        assert recorder.samples == [] and not source.stats.connected

        for mode in ("SignAndEncrypt", "Sign"):
            await connects(secured(plc.endpoint, "Aes128_Sha256_RsaOaep", mode, client,
                                   [stranger, plc.certificate]), plc_machine())

        deprecated = secured(plc.endpoint, "Basic256", "SignAndEncrypt", client,
                             [plc.certificate])
        with pytest.raises(ConfigError) as refused:
            plant_config([deprecated], plc_machine())
        assert "sources[0].security.policy: Basic256 is deprecated" in str(refused.value)
        deprecated["security"]["allow_deprecated"] = True
        await connects(deprecated, plc_machine())
    finally:
        await plc.stop()


async def test_asyncua_refuses_a_server_whose_key_is_not_the_pinned_one(tmp_path: Path) -> None:
    """What the trust list relies on after its own check: asyncua uses the certificate it
    is given, so a server holding another key gets no session (checked here without
    linemon's check in front)."""
    plc = TestPlc(policies=(P.Basic256Sha256_SignAndEncrypt, P.Basic256Sha256_Sign),
                  cert_dir=tmp_path / "plc")
    await plc.start()
    client = generate_client_certificate(tmp_path / "pki", "linemon")
    impostor = generate_client_certificate(tmp_path / "other", "other").cert_path
    try:
        for mode in ("SignAndEncrypt", "Sign"):
            ua_client = Client(plc.endpoint, timeout=2)
            ua_client.application_uri = client.application_uri
            await ua_client.set_security(
                security_policies.SecurityPolicyBasic256Sha256, str(client.cert_path),
                str(client.key_path), server_certificate=str(impostor),
                mode=getattr(ua.MessageSecurityMode, mode))
            with pytest.raises((TimeoutError, ConnectionError, OSError, ua.UaError)) as failed:
                await ua_client.connect()
            print(f"\nasyncua with a wrong pinned certificate ({mode}): {failed.value!r}")
    finally:
        await plc.stop()
