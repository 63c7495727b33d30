"""OPC-UA security for the simulated server: certificates, trust list and users."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import User, UserRole
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

POLICIES = {
    ("Basic256Sha256", "Sign"): ua.SecurityPolicyType.Basic256Sha256_Sign,
    ("Basic256Sha256", "SignAndEncrypt"): ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ("Aes256_Sha256_RsaPss", "Sign"): ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign,
    ("Aes256_Sha256_RsaPss", "SignAndEncrypt"): (
        ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt
    ),
}
_ALIASES = {"Aes256Sha256RsaPss": "Aes256_Sha256_RsaPss"}


@dataclass(frozen=True)
class OpcUaSecurity:
    """Secured endpoints: every (policy, mode) pair is offered; clients must be in the trust list.

    The server's self-signed certificate and key are created in `cert_dir` at start (or reused
    if still valid); give `server_certificate_path` to clients so they can trust the server.
    """

    cert_dir: Path
    policies: tuple[str, ...] = ("Basic256Sha256",)  # and/or "Aes256_Sha256_RsaPss"
    modes: tuple[str, ...] = ("SignAndEncrypt",)  # and/or "Sign"
    users: Mapping[str, str] = field(default_factory=dict)  # username -> password
    allow_anonymous: bool = False
    trusted_client_certs: tuple[Path, ...] = ()  # DER or PEM files
    offer_unsecured: bool = False  # also offer a None endpoint (still needs a trusted user)
    hostname: str = "localhost"
    application_uri: str = "urn:linemon:simulator:server"

    def __post_init__(self) -> None:
        if not self.users and not self.allow_anonymous:
            raise ValueError("a secured OPC-UA endpoint needs users or allow_anonymous=True")
        self.policy_types()  # fail early on an unknown policy or mode

    @property
    def server_certificate_path(self) -> Path:
        return Path(self.cert_dir) / "server-cert.der"

    @property
    def server_key_path(self) -> Path:
        return Path(self.cert_dir) / "server-key.pem"

    def policy_types(self) -> list[ua.SecurityPolicyType]:
        chosen = []
        for policy in self.policies:
            name = _ALIASES.get(policy, policy)
            for mode in self.modes:
                if (name, mode) not in POLICIES:
                    raise ValueError(f"unsupported OPC-UA security policy/mode {policy}/{mode}")
                chosen.append(POLICIES[(name, mode)])
        if self.offer_unsecured:
            chosen.append(ua.SecurityPolicyType.NoSecurity)
        return chosen

    async def ensure_server_certificate(self) -> None:
        await asyncio.to_thread(Path(self.cert_dir).mkdir, parents=True, exist_ok=True)
        await cert_gen.setup_self_signed_certificate(
            self.server_key_path,
            self.server_certificate_path,
            self.application_uri,
            self.hostname,
            [ExtendedKeyUsageOID.SERVER_AUTH],
            {"organizationName": "linemon simulator"},
        )


@dataclass(frozen=True)
class ClientCertificate:
    cert_path: Path
    key_path: Path
    application_uri: str


def generate_client_certificate(
    directory: Path, name: str = "client", application_uri: str | None = None
) -> ClientCertificate:
    """A self-signed OPC-UA client certificate (DER) and key (PEM), e.g. for tests."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    uri = application_uri or f"urn:linemon:{name}"
    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key,
        uri,
        {"organizationName": "linemon"},
        [x509.UniformResourceIdentifier(uri), x509.DNSName("localhost")],
        [ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    cert_path, key_path = directory / f"{name}-cert.der", directory / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(Encoding.DER))
    key_path.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return ClientCertificate(cert_path, key_path, uri)


class TrustList:
    """Certificate validator: only the listed client certificates may open a session."""

    def __init__(self, paths: tuple[Path, ...]) -> None:
        self._trusted = {_load_der(Path(p)) for p in paths}

    async def __call__(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        if cert.public_bytes(Encoding.DER) not in self._trusted:
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)


class PasswordUsers:
    """asyncua user manager: username/password pairs, and anonymous if allowed."""

    def __init__(self, users: Mapping[str, str], allow_anonymous: bool) -> None:
        self._users = dict(users)
        self._anonymous = allow_anonymous

    def get_user(self, iserver, username=None, password=None, certificate=None) -> User | None:
        if username is None:
            return User(role=UserRole.User) if self._anonymous else None
        expected = self._users.get(username)
        if expected is not None and hmac.compare_digest(expected, password or ""):
            return User(role=UserRole.User, name=username)
        return None


def _load_der(path: Path) -> bytes:
    data = path.read_bytes()
    if data.startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
    return data
