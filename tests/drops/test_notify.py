"""Run notifications: Slack-compatible webhook and e-mail."""

from __future__ import annotations

import pytest

from tests.drops._servers import dead_port, smtp_sink, webhook_sink
from xtalscreen.drops.notify import EmailNotifier, NullNotifier, WebhookNotifier, make_notifier
from xtalscreen.errors import ParameterError


def test_webhook_posts_slack_json():
    with webhook_sink() as (url, got):
        n = make_notifier(url)
        assert isinstance(n, WebhookNotifier)
        assert n.send("run 3", "12 scored") is True
    assert got == [{"text": "*run 3*\n12 scored"}]


def test_webhook_failure_is_logged_not_raised(caplog):
    with webhook_sink(status=500) as (url, got):
        assert make_notifier(url).send("s", "t") is False
    assert make_notifier(f"http://127.0.0.1:{dead_port()}/x").send("s", "t") is False
    assert "notification" in caplog.text


def test_email_through_smtp():
    with smtp_sink() as (port, got):
        n = make_notifier(f"smtp://127.0.0.1:{port}?to=a@x.org,b@x.org&from=c4@x.org")
        assert isinstance(n, EmailNotifier) and n.to == ["a@x.org", "b@x.org"]
        assert n.send("run 4 FAILED", "database down") is True
        assert make_notifier(f"mailto:a@x.org?smtp=127.0.0.1:{port}").send("hi", "there")
    assert len(got) == 2
    assert "Subject: run 4 FAILED" in got[0] and "database down" in got[0]
    assert "To: a@x.org, b@x.org" in got[0]
    assert make_notifier(f"smtp://127.0.0.1:{dead_port()}?to=a@x.org").send("s", "t") is False


def test_bad_notify_urls():
    assert isinstance(make_notifier(None), NullNotifier)
    with pytest.raises(ParameterError, match="--notify"):
        make_notifier("ftp://x")
    with pytest.raises(ParameterError, match="recipients"):
        make_notifier("smtp://host:25")
