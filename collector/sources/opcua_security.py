"""OPC-UA security: linemon's client certificate, and the server's checked against a trust list.

No trust on first use. Before the secure channel is opened, the certificate the endpoint
presents (in GetEndpoints, which every client reads unsecured) must be one of the trusted
certificates, byte for byte; otherwise the source refuses with a line naming the
certificate. asyncua then pins the trusted certificate: the channel is encrypted for its
key, the server's signatures are checked against it, and CreateSession fails on any other
certificate ("Server certificate mismatch", and our `certificate_validator` again), so a
server that shows a trusted certificate without holding its private key gets no session.
"""

from __future__ import annotations

from pathlib import Path

from asyncua import Client, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import security_policies
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from collector.sources.base import SourceConfigError, SourceDisconnected
from linemon.config import OpcUaSecurity


async def apply_security(client: Client, endpoint: str, sec: OpcUaSecurity) -> None:
    """Configure `client` for `sec`; raise SourceConfigError if the server is not trusted."""
    if sec.policy == "None":
        return
    assert sec.certificate and sec.private_key  # checked when the config was loaded
    policy = getattr(security_policies, f"SecurityPolicy{sec.policy.replace('_', '')}")
    mode = getattr(ua.MessageSecurityMode, sec.mode)
    trusted = _load_trust_list(sec.trusted_server_certificates)
    own = _load(Path(sec.certificate), "security.certificate")
    client.application_uri = _application_uri(own) or client.application_uri
    try:
        endpoints = await client.connect_and_get_server_endpoints()
    except (OSError, TimeoutError, ua.UaError) as err:
        raise SourceDisconnected(f"cannot read the endpoints of {endpoint}: {err!r}") from err
    offered = [ep for ep in endpoints
               if ep.SecurityPolicyUri == policy.URI and ep.SecurityMode == mode]
    if not offered:
        choices = sorted({f"{ep.SecurityPolicyUri.rsplit('#', 1)[-1]}/{ep.SecurityMode.name}"
                          for ep in endpoints})
        raise SourceConfigError(f"{endpoint} offers no {sec.policy}/"
                                f"{sec.mode} endpoint (it offers {', '.join(choices)})")
    presented = _first_der(offered[0].ServerCertificate or b"")
    trusted_path = trusted.get(presented)
    if trusted_path is None:
        raise SourceConfigError(
            f"refusing {endpoint}: its certificate {_describe(presented)} is "
            "not in security.trusted_server_certificates (linemon does not trust on first use)")
    try:
        await client.set_security(policy, str(sec.certificate), str(sec.private_key),
                                  server_certificate=str(trusted_path), mode=mode)
    except (OSError, ValueError, TypeError) as err:
        raise SourceConfigError(f"cannot load the client certificate or key: {err}") from err

    async def still_trusted(cert: x509.Certificate, _app: ua.ApplicationDescription) -> None:
        if cert.public_bytes(Encoding.DER) not in trusted:
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)

    client.certificate_validator = still_trusted


def _load_trust_list(paths: list[Path]) -> dict[bytes, Path]:
    return {_load(Path(p), "security.trusted_server_certificates"): Path(p) for p in paths}


def _load(path: Path, key: str) -> bytes:
    """A certificate file (DER or PEM) as DER bytes."""
    try:
        data = path.read_bytes()
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
        x509.load_der_x509_certificate(data)
    except (OSError, ValueError) as err:
        raise SourceConfigError(f"{key}: cannot read {path}: {err}") from err
    return data


def _first_der(blob: bytes) -> bytes:
    """The leaf certificate of a DER chain (OPC-UA sends chains as concatenated DER)."""
    if len(blob) < 2 or blob[0] != 0x30:
        return blob
    if blob[1] < 0x80:
        return blob[: 2 + blob[1]]
    size = blob[1] & 0x7F
    return blob[: 2 + size + int.from_bytes(blob[2 : 2 + size], "big")]


def _describe(der: bytes) -> str:
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return f"({len(der)} bytes, not a certificate)"
    thumbprint = cert.fingerprint(hashes.SHA1()).hex()  # what OPC-UA tools show
    return f"'{cert.subject.rfc4514_string()}' (SHA-1 thumbprint {thumbprint})"


def _application_uri(der: bytes) -> str | None:
    """A client's ApplicationUri must match the URI in its certificate, or servers refuse it."""
    cert = x509.load_der_x509_certificate(der)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = names.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None
