"""Run summaries and failures sent to people: a chat webhook or e-mail.

:func:`make_notifier` picks the kind from the URL:

- ``http(s)://...``: POST of Slack-compatible JSON ``{"text": "..."}`` (Slack, Mattermost,
  Rocket.Chat and Teams incoming webhooks accept it);
- ``smtp://[user:password@]host[:port]?to=a@x.org,b@x.org&from=c4@x.org`` (``smtps://`` for
  TLS, ``starttls=1`` for STARTTLS): an e-mail through that server;
- ``mailto:a@x.org?smtp=host:port``: the same, shorter.

A notifier never stops the pipeline: a failed post is logged and forgotten.

Examples
--------
>>> n = make_notifier(None)
>>> n.send("subject", "text")          # NullNotifier: does nothing
"""

from __future__ import annotations

import json
import logging
import smtplib
import urllib.error
import urllib.request
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlparse

from xtalscreen.errors import ParameterError

log = logging.getLogger(__name__)


class Notifier(Protocol):
    def send(self, subject: str, text: str) -> bool:
        """Deliver one message; True if delivered. Never raises for delivery problems."""


class NullNotifier:
    def send(self, subject: str, text: str) -> bool:
        return False


class WebhookNotifier:
    """POST ``{"text": "*subject*\\ntext"}`` to a chat webhook URL."""

    def __init__(self, url: str, *, timeout: float = 10.0):
        self.url, self.timeout = url, timeout

    def send(self, subject: str, text: str) -> bool:
        body = json.dumps({"text": f"*{subject}*\n{text}"}).encode()
        req = urllib.request.Request(self.url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                resp.read()
            return True
        except (urllib.error.URLError, OSError, ValueError) as e:
            log.warning("notification to %s failed: %s", urlparse(self.url).netloc, e)
            return False


class EmailNotifier:
    """Send an e-mail through an SMTP server."""

    def __init__(self, host: str, port: int, *, to: list[str], sender: str, user: str | None = None,
                 password: str | None = None, ssl: bool = False, starttls: bool = False,
                 timeout: float = 10.0):
        if not to:
            raise ParameterError("--notify e-mail needs recipients (?to=a@x.org)")
        self.host, self.port, self.to, self.sender = host, port, to, sender
        self.user, self.password, self.ssl, self.starttls = user, password, ssl, starttls
        self.timeout = timeout

    def send(self, subject: str, text: str) -> bool:
        msg = EmailMessage()
        msg["Subject"], msg["From"], msg["To"] = subject, self.sender, ", ".join(self.to)
        msg.set_content(text)
        cls = smtplib.SMTP_SSL if self.ssl else smtplib.SMTP
        try:
            with cls(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.user:
                    smtp.login(self.user, self.password or "")
                smtp.send_message(msg)
            return True
        except (smtplib.SMTPException, OSError) as e:
            log.warning("e-mail notification via %s:%s failed: %s", self.host, self.port, e)
            return False


def make_notifier(url: str | None) -> Notifier:
    """A notifier for ``url`` (see the module docstring); :class:`NullNotifier` for None/empty."""
    if not url:
        return NullNotifier()
    p = urlparse(url)
    q = {k: v[-1] for k, v in parse_qs(p.query).items()}
    if p.scheme in ("http", "https"):
        return WebhookNotifier(url)
    if p.scheme in ("smtp", "smtps"):
        if not p.hostname:
            raise ParameterError(f"--notify {url!r}: an smtp:// URL needs a host")
        to = [a for a in q.get("to", "").split(",") if a]
        return EmailNotifier(p.hostname, p.port or (465 if p.scheme == "smtps" else 25), to=to,
                             sender=q.get("from", "xtalscreen@localhost"),
                             user=unquote(p.username) if p.username else None,
                             password=unquote(p.password) if p.password else None,
                             ssl=p.scheme == "smtps", starttls=q.get("starttls") in ("1", "true"))
    if p.scheme == "mailto":
        host, _, port = q.get("smtp", "localhost:25").partition(":")
        return EmailNotifier(host, int(port or 25), to=[a for a in unquote(p.path).split(",") if a],
                             sender=q.get("from", "xtalscreen@localhost"))
    raise ParameterError(f"--notify {url!r}: use an http(s):// chat webhook, smtp://HOST:PORT?to=ADDR "
                         "or mailto:ADDR?smtp=HOST:PORT")
