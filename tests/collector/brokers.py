"""mosquitto set up the ways the collector tests need: logins, TLS, safer persistence."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import pwd
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.services import Mosquitto


@dataclass
class ConfiguredMosquitto(Mosquitto):
    """The shared Mosquitto fixture class with some lines of its config replaced or added."""

    settings: dict[str, str] = field(default_factory=dict)  # option -> value, replaced
    listener_lines: list[str] = field(default_factory=list)  # after the listener line

    def __post_init__(self) -> None:
        super().__post_init__()
        # Started as root, mosquitto drops to user "mosquitto", which cannot write the
        # persistence file in our directory ("Error saving in-memory database"); staying
        # the user we are fixes that (the option does nothing for other users).
        self.settings.setdefault("user", pwd.getpwuid(os.getuid()).pw_name)
        lines = []
        for line in self.config.read_text().splitlines():
            option = line.split(" ", 1)[0]
            if option in self.settings:
                continue
            lines.append(line)
            if option == "listener":
                lines += self.listener_lines
        lines += [f"{k} {v}" for k, v in self.settings.items()]
        self.config.write_text("\n".join(lines) + "\n")


def with_login(workdir: Path, user: str, password: str) -> ConfiguredMosquitto:
    workdir.mkdir(parents=True, exist_ok=True)
    passwords = workdir / "passwords"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), user, password], check=True,
                   capture_output=True)
    return ConfiguredMosquitto(workdir, settings={"allow_anonymous": "false",
                                                  "password_file": str(passwords)})


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def make_ca_and_server_cert(directory: Path, name: str = "test") -> TlsFiles:
    """A throwaway CA and a server certificate it signed, for 127.0.0.1 and localhost."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"linemon {name} CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = TlsFiles(directory / f"{name}-ca.pem", directory / f"{name}-server.pem",
                     directory / f"{name}-server.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.TraditionalOpenSSL,
                                            serialization.NoEncryption()))
    return files


def with_tls(workdir: Path, files: TlsFiles) -> ConfiguredMosquitto:
    return ConfiguredMosquitto(workdir, listener_lines=[
        f"cafile {files.ca}", f"certfile {files.cert}", f"keyfile {files.key}"])


def persistent_often(workdir: Path) -> ConfiguredMosquitto:
    """Persistence saved every 50 changes instead of once a second, 1000 messages in flight.

    mosquitto acknowledges a publisher before it saves, so kill -9 loses what it had
    acknowledged but neither saved nor handed on yet (a subscriber offline or at its
    in-flight limit). Saving often and a larger in-flight window shrink that window; the
    tests only kill it while linemon keeps up, when everything acknowledged has already
    been written to linemon's socket.
    """
    return ConfiguredMosquitto(workdir, persistence=True, settings={
        "autosave_on_changes": "true", "autosave_interval": "50",
        "max_inflight_messages": "1000"})
