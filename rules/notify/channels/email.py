"""E-mail over SMTP (aiosmtplib): STARTTLS, implicit TLS or plain, with optional AUTH.

The Message-ID is derived from the delivery's idempotency key, so a message sent again
after a crash has the same id and a mail system (or a person) can tell it is the same
one. A resolved or escalated message threads under the first one the recipient got.

The ack link in a mail opens a confirmation page (GET) that POSTs on one more tap: mail
scanners follow links, and a GET must not acknowledge anything.
"""

from __future__ import annotations

import ssl
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib

from linemon.config import resolve_secret
from rules.notify.channels.base import DeliveryError, register
from rules.notify.config import EmailChannelConfig
from rules.notify.message import Message, short_hash


@register("email")
class EmailChannel:
    kind = "email"

    def __init__(self, config: EmailChannelConfig) -> None:
        self.config = config
        self.name = config.name
        at = f"notifications.channels[{self.name}]"
        self._username = resolve_secret(config.username_env, f"{at}.username_env")
        self._password = resolve_secret(config.password_env, f"{at}.password_env")
        self._tls = ssl.create_default_context(
            cafile=str(config.ca_file) if config.ca_file else None)
        self.domain = config.sender.rsplit("@", 1)[1]

    async def send(self, message: Message, address: str) -> str:
        mail = self.compose(message, address)
        c = self.config
        try:
            errors, answer = await aiosmtplib.send(
                mail, hostname=c.host, port=c.effective_port, username=self._username,
                password=self._password, use_tls=c.security == "tls",
                start_tls=c.security == "starttls", tls_context=self._tls,
                timeout=c.timeout_s)
        except aiosmtplib.SMTPResponseException as err:
            # 5xx: this mail is refused as it is (bad address, policy); 4xx: try again later.
            raise DeliveryError(f"{c.host}: SMTP {err.code} {err.message}",
                                permanent=500 <= err.code < 600 and err.code != 535) from err
        except aiosmtplib.SMTPRecipientsRefused as err:
            raise DeliveryError(f"{c.host}: recipient refused: {err.recipients}",
                                permanent=True) from err
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as err:
            raise DeliveryError(f"{c.host}: {type(err).__name__}: {err}") from err
        if errors:
            raise DeliveryError(f"{c.host}: refused {sorted(errors)}", permanent=True)
        return answer.strip()[:200]

    def compose(self, message: Message, address: str) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self.config.sender
        mail["To"] = address
        mail["Subject"] = message.title
        mail["Message-ID"] = self.message_id(message.key)
        mail["Date"] = format_datetime(datetime.fromisoformat(message.created_at))
        mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
        mail["X-Linemon-Key"] = message.key
        if message.thread_key:
            parent = self.message_id(message.thread_key)
            mail["In-Reply-To"] = parent
            mail["References"] = parent
        text = [message.body, ""]
        if message.ack_url:
            text.append(f"Acknowledge: {message.ack_url}")
        if message.click_url:
            text.append(f"Board: {message.click_url}")
        mail.set_content("\n".join(text).rstrip() + "\n")
        return mail

    def message_id(self, key: str) -> str:
        return f"<{short_hash(key)}.linemon@{self.domain}>"

    async def close(self) -> None:
        return None
