"""Mail: sending through the configured SMTP server, the outbox, an IMAP inbox, the tools.

`MailService.send` records every message in the sender's outbox before it talks to SMTP
(``queued``), then marks it ``sent`` (with its Message-ID) or ``failed`` (with the reason:
no server configured, refused recipients, a connection error). A message sent under an
idempotency key (a task's ``task:step``) is found by that key, so a resumed task gets the
first attempt's record back and never sends twice; a message left ``queued`` by a crash
mid-send is marked failed at the next start ("may or may not have been sent"), never
retried. SMTP settings (``smtp_host``, ``smtp_port``, ``smtp_security``, ``smtp_user``,
``smtp_password``, ``mail_from``) come from the configuration. The inbox is read over IMAP
(``imaplib``) only where ``imap_host`` is configured; it is the machine owner's mailbox, so
only the local owner and admins may read it. Tools: ``mail_send`` (permission ``mail``,
a side effect whose approval shows the exact recipients, subject and body) and
``mail_inbox``.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from llmasos.config import Settings
from llmasos.errors import InvalidRequestError, LLMasOSError, PayloadTooLargeError
from llmasos.storage.crypto import ContentCipher
from llmasos.storage.database import Database
from llmasos.storage.schema import OutboxMessage
from llmasos.tools.records import MAX_KEY_CHARS, Owner, RowIds, Sealed, epoch, now

MESSAGE_IDS: Final = RowIds("msg", "message")
MAX_RECIPIENTS: Final = 50
MAX_SUBJECT_CHARS: Final = 500
MAX_BODY_CHARS: Final = 100_000
SMTP_TIMEOUT_S: Final = 30.0
INTERRUPTED: Final = "interrupted while sending (a restart): it may or may not have been sent"


def check_addresses(values: Any, field: str, *, required: bool) -> list[str]:
    """Mail addresses (``a@b.c`` or ``Name <a@b.c>``), checked one by one."""
    if values is None:
        values = []
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or (required and not values):
        raise InvalidRequestError(f"{field}: give at least one address", param=field)
    if len(values) > MAX_RECIPIENTS:
        raise InvalidRequestError(f"{field}: at most {MAX_RECIPIENTS} addresses", param=field)
    result = []
    for value in values:
        _, address = parseaddr(value) if isinstance(value, str) else ("", "")
        local, _, domain = address.rpartition("@")
        if (
            not isinstance(value, str)
            or any(c in value for c in "\r\n")
            or not local
            or "." not in domain
            or len(value) > 320
        ):
            raise InvalidRequestError(
                f"{field}: {str(value)[:80]!r} is not a mail address", param=field
            )
        result.append(value.strip())
    return result


class MailService:
    """Sends mail as a user and keeps their outbox."""

    def __init__(self, settings: Settings, database: Database, cipher: ContentCipher) -> None:
        self.settings = settings
        self.database = database
        self.cipher = cipher
        self.sealed = Sealed(cipher, "outbox")

    @property
    def configured(self) -> bool:
        return bool(self.settings.smtp_host)

    def to_dict(self, row: OutboxMessage) -> dict[str, Any]:
        data = self.sealed.open(row.id, row.content)
        return {
            "id": MESSAGE_IDS.format(row.id),
            "object": "outbox.message",
            "to": data.get("to", []),
            "cc": data.get("cc", []),
            "subject": data.get("subject", ""),
            "body": data.get("body", ""),
            "status": row.status,
            "error": row.error,
            "message_id": row.message_id,
            "created_at": epoch(row.created_at),
            "sent_at": epoch(row.sent_at),
        }

    def list_messages(
        self, owner: Owner, *, status: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """The outbox, newest first."""
        if status not in (None, "queued", "sent", "failed"):
            raise InvalidRequestError("status: use queued, sent or failed", param="status")
        statement = select(OutboxMessage).where(OutboxMessage.owner == owner.key)
        if status is not None:
            statement = statement.where(OutboxMessage.status == status)
        statement = statement.order_by(OutboxMessage.id.desc()).limit(max(1, min(limit, 1000)))
        with self.database.session() as session:
            return [self.to_dict(row) for row in session.scalars(statement)]

    def get(self, owner: Owner, message_id: str) -> dict[str, Any]:
        with self.database.session() as session:
            row = session.get(OutboxMessage, MESSAGE_IDS.parse(message_id))
            if row is None or row.owner != owner.key:
                raise MESSAGE_IDS.missing(message_id)
            return self.to_dict(row)

    def check(self, to: Any, subject: Any, body: Any, cc: Any = None) -> dict[str, Any]:
        """The message's fields, validated (400/413 naming the field)."""
        if not isinstance(subject, str) or any(c in subject for c in "\r\n"):
            raise InvalidRequestError("subject: one line of text", param="subject")
        if len(subject) > MAX_SUBJECT_CHARS:
            raise InvalidRequestError(
                f"subject: at most {MAX_SUBJECT_CHARS} characters", param="subject"
            )
        if not isinstance(body, str):
            raise InvalidRequestError("body: must be text", param="body")
        if len(body) > MAX_BODY_CHARS:
            raise PayloadTooLargeError(
                f"body: {len(body)} characters; at most {MAX_BODY_CHARS}", param="body"
            )
        return {
            "to": check_addresses(to, "to", required=True),
            "cc": check_addresses(cc, "cc", required=False),
            "subject": subject.strip(),
            "body": body,
        }

    def send(
        self,
        owner: Owner,
        to: Any,
        subject: Any,
        body: Any,
        *,
        cc: Any = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Record the message, send it, record the outcome; with a key seen before, the
        first record (nothing is sent again)."""
        message = self.check(to, subject, body, cc)
        if idempotency_key is not None and len(idempotency_key) > MAX_KEY_CHARS:
            raise InvalidRequestError(f"idempotency key longer than {MAX_KEY_CHARS} characters")
        existing = self._by_key(owner, idempotency_key)
        if existing is not None:
            return existing
        try:
            number = self._record(owner, idempotency_key, message)
        except IntegrityError:  # the same key, concurrently: that one sends
            found = self._by_key(owner, idempotency_key)
            assert found is not None
            return found
        status, error, message_id = self._deliver(message)
        with self.database.session(write=True) as session:
            row = session.get(OutboxMessage, number)
            assert row is not None
            row.status, row.error, row.message_id = status, error, message_id
            if status == "sent":
                row.sent_at = now()
            return self.to_dict(row)

    def _by_key(self, owner: Owner, key: str | None) -> dict[str, Any] | None:
        if key is None:
            return None
        with self.database.session() as session:
            row = session.scalar(
                select(OutboxMessage).where(
                    OutboxMessage.owner == owner.key, OutboxMessage.idempotency_key == key
                )
            )
            return None if row is None else self.to_dict(row)

    def _record(self, owner: Owner, key: str | None, message: dict[str, Any]) -> int:
        with self.database.session(write=True) as session:
            row = OutboxMessage(
                owner=owner.key,
                user_id=owner.user_id,
                idempotency_key=key,
                status="queued",
                content=b"",
                created_at=now(),
            )
            session.add(row)
            session.flush()
            row.content = self.sealed.seal(row.id, message)
            return row.id

    def _deliver(self, message: dict[str, Any]) -> tuple[str, str | None, str | None]:
        """(status, error, Message-ID) of one SMTP attempt."""
        settings = self.settings
        if not settings.smtp_host:
            return "failed", "mail is not configured: set smtp_host (see llmasos config)", None
        sender = settings.mail_from or settings.smtp_user
        if not sender:
            return "failed", "mail is not configured: set mail_from (the From address)", None
        mail = EmailMessage()
        mail["From"] = sender
        mail["To"] = ", ".join(message["to"])
        if message["cc"]:
            mail["Cc"] = ", ".join(message["cc"])
        mail["Subject"] = message["subject"]
        mail["Date"] = formatdate(localtime=False)
        domain = parseaddr(sender)[1].rpartition("@")[2] or None
        mail["Message-ID"] = make_msgid(domain=domain)
        mail.set_content(message["body"])
        try:
            if settings.smtp_security == "ssl":
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    settings.smtp_host,
                    settings.smtp_port,
                    timeout=SMTP_TIMEOUT_S,
                    context=ssl.create_default_context(),
                )
            else:
                client = smtplib.SMTP(
                    settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT_S
                )
            with client:
                if settings.smtp_security == "starttls":
                    client.starttls(context=ssl.create_default_context())
                if settings.smtp_user:
                    client.login(settings.smtp_user, settings.smtp_password or "")
                refused = client.send_message(mail)
        except smtplib.SMTPRecipientsRefused as error:
            return "failed", f"every recipient was refused: {_refusals(error.recipients)}", None
        except (smtplib.SMTPException, OSError) as error:
            return "failed", f"{type(error).__name__}: {error}"[:1000], None
        if refused:
            return "sent", f"some recipients were refused: {_refusals(refused)}", mail["Message-ID"]
        return "sent", None, str(mail["Message-ID"])

    def fail_interrupted(self) -> int:
        """Mark messages left queued by a crash as failed (never resent); how many."""
        with self.database.session(write=True) as session:
            rows = list(
                session.scalars(select(OutboxMessage).where(OutboxMessage.status == "queued"))
            )
            for row in rows:
                row.status, row.error = "failed", INTERRUPTED
            return len(rows)

    # --- inbox -----------------------------------------------------------------------------

    def inbox(self, *, limit: int = 10, unread: bool = False) -> list[dict[str, Any]]:
        """The newest messages of the configured IMAP mailbox (read-only; nothing is marked
        seen)."""
        settings = self.settings
        if not settings.imap_host:
            raise InvalidRequestError(
                "no inbox is configured: set imap_host, imap_user and imap_password",
                code="inbox_not_configured",
            )
        limit = max(1, min(limit, 50))
        try:
            client: imaplib.IMAP4 = (
                imaplib.IMAP4_SSL(settings.imap_host, settings.imap_port, timeout=SMTP_TIMEOUT_S)
                if settings.imap_ssl
                else imaplib.IMAP4(settings.imap_host, settings.imap_port, timeout=SMTP_TIMEOUT_S)
            )
            with client:
                client.login(settings.imap_user or "", settings.imap_password or "")
                client.select("INBOX", readonly=True)
                _, found = client.search(None, "UNSEEN" if unread else "ALL")
                numbers = (found[0] or b"").split()[-limit:]
                messages = []
                for number in reversed(numbers):
                    _, parts = client.fetch(number.decode(), "(BODY.PEEK[]<0.65536>)")
                    raw = next((p[1] for p in parts if isinstance(p, tuple)), b"")
                    messages.append(_summary(number.decode(), raw))
                return messages
        except (imaplib.IMAP4.error, OSError) as error:
            raise LLMasOSError(
                f"the IMAP server failed: {error}"[:500], code="inbox_failed"
            ) from None


def _refusals(recipients: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(
        f"{address} ({code} {reply.decode(errors='replace')})"
        for address, (code, reply) in recipients.items()
    )[:800]


def _summary(number: str, raw: bytes) -> dict[str, Any]:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    body = message.get_body(preferencelist=("plain", "html")) if message.is_multipart() else message
    try:
        text = body.get_content() if body is not None else ""
    except (LookupError, ValueError):
        text = ""
    return {
        "number": number,
        "from": str(message.get("From", "")),
        "to": str(message.get("To", "")),
        "subject": str(message.get("Subject", "")),
        "date": str(message.get("Date", "")),
        "snippet": " ".join(str(text).split())[:500],
    }
