"""Mail through a real SMTP server (aiosmtpd on loopback): what it received, the outbox's
record of every message, sending exactly once per idempotency key, and failures with their
reason."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from llmasos.config import Settings
from llmasos.errors import InvalidRequestError, NotFoundError
from llmasos.net import free_port
from llmasos.storage import Database
from llmasos.tools.mail import INTERRUPTED, MailService
from llmasos.tools.personal import Personal
from tests.tools.conftest import ALICE, BOB, SmtpSink


def mail_settings(tmp_path: Path, sink: SmtpSink | None, port: int | None = None) -> Settings:
    return Settings(
        home=tmp_path / "home",
        smtp_host="127.0.0.1",
        smtp_port=port or (sink.port if sink else 25),
        smtp_security="none",
        mail_from="LLMasOS <os@example.org>",
    )


def test_send_records_and_delivers(
    tmp_path: Path, personal: Personal, smtp_sink: SmtpSink, database: Database
) -> None:
    mail = MailService(mail_settings(tmp_path, smtp_sink), database, personal.mail.cipher)
    sent = mail.send(
        ALICE, ["bob@example.com"], "Lunch?", "Noon at the usual place.\n", cc=["c@example.net"]
    )
    assert sent["status"] == "sent" and sent["error"] is None and sent["message_id"]
    assert len(smtp_sink.received) == 1
    sender, recipients, raw = smtp_sink.received[0]
    assert sender == "os@example.org"
    assert sorted(recipients) == ["bob@example.com", "c@example.net"]
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"] == "Lunch?" and message["Message-ID"] == sent["message_id"]
    assert message.get_content().strip() == "Noon at the usual place."
    assert mail.list_messages(ALICE) == [sent] and mail.list_messages(BOB) == []
    with pytest.raises(NotFoundError):
        mail.get(BOB, sent["id"])


def test_the_same_key_never_sends_twice(
    tmp_path: Path, personal: Personal, smtp_sink: SmtpSink, database: Database
) -> None:
    mail = MailService(mail_settings(tmp_path, smtp_sink), database, personal.mail.cipher)
    first = mail.send(ALICE, ["bob@example.com"], "Hi", "once", idempotency_key="t9:1")
    again = mail.send(ALICE, ["bob@example.com"], "Hi", "once", idempotency_key="t9:1")
    assert again == first and len(smtp_sink.received) == 1
    assert len(mail.list_messages(ALICE)) == 1


def test_failures_are_recorded_with_their_reason(
    tmp_path: Path, personal: Personal, database: Database
) -> None:
    unconfigured = personal.mail  # no smtp_host in the fixture's settings
    failed = unconfigured.send(ALICE, ["bob@example.com"], "Hi", "text")
    assert failed["status"] == "failed" and "smtp_host" in failed["error"]
    down = MailService(mail_settings(tmp_path, None, free_port()), database, unconfigured.cipher)
    refused = down.send(ALICE, ["bob@example.com"], "Hi", "text")
    assert refused["status"] == "failed" and "ConnectionRefusedError" in refused["error"]
    assert [m["status"] for m in down.list_messages(ALICE, status="failed")] == ["failed"] * 2
    for to, subject in ((["not-an-address"], "x"), ([], "x"), (["a@b.co"], "two\nlines")):
        with pytest.raises(InvalidRequestError):
            down.send(ALICE, to, subject, "body")


def test_mail_left_queued_by_a_crash_is_marked_failed(
    personal: Personal, database: Database
) -> None:
    mail = personal.mail
    number = mail._record(ALICE, "t1:1", mail.check(["a@b.co"], "s", "b"))
    assert mail.fail_interrupted() == 1
    record = mail.get(ALICE, f"msg_{number}")
    assert record["status"] == "failed" and record["error"] == INTERRUPTED
    assert mail.send(ALICE, ["a@b.co"], "s", "b", idempotency_key="t1:1") == record


def test_inbox_needs_configuration(personal: Personal) -> None:
    with pytest.raises(InvalidRequestError, match="imap_host"):
        personal.mail.inbox()
