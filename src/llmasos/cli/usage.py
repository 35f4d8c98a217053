"""``llmasos quota``, ``usage``, ``price``, ``audit`` and ``keys rotate-master``.

Like the other access commands these open the database the settings name and act as the
local owner. Reports are rich tables; dates are ``YYYY-MM-DD``, ISO datetimes (UTC unless
they say otherwise) or durations back from now (``7d``, ``12h``).
"""

from __future__ import annotations

import base64
import binascii
import importlib
import sys
from typing import Annotated

import typer
from rich.text import Text

from llmasos.cli.access import _database, _when, keys_app
from llmasos.cli.output import JSON_OPTION_HELP, Column, print_json, print_table, table
from llmasos.cli.root import app, console, err_console, state
from llmasos.errors import InvalidRequestError

quota_app = typer.Typer(help="Set and show quotas and rate limits.", no_args_is_help=True)
price_app = typer.Typer(help="The per-model price table for usage costs.", no_args_is_help=True)
app.add_typer(quota_app, name="quota")
app.add_typer(price_app, name="price")

_LIMIT_HELP = "Omit to keep the current value."
PERIODS = ("minute", "day", "month", "concurrent")
"""The windows `quota show` reports usage in, one per limit."""


def _limit(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


@quota_app.command("set")
def quota_set(
    user: Annotated[str, typer.Option("--user", help="The user the limits apply to.")],
    key: Annotated[
        str | None, typer.Option("--key", help="Limit only this key of the user (key id).")
    ] = None,
    requests_per_minute: Annotated[
        int | None, typer.Option("--requests-per-minute", min=0, help=_LIMIT_HELP)
    ] = None,
    tokens_per_day: Annotated[
        int | None, typer.Option("--tokens-per-day", min=0, help=_LIMIT_HELP)
    ] = None,
    tokens_per_month: Annotated[
        int | None, typer.Option("--tokens-per-month", min=0, help=_LIMIT_HELP)
    ] = None,
    concurrent: Annotated[
        int | None, typer.Option("--concurrent", min=0, help="Concurrent requests. " + _LIMIT_HELP)
    ] = None,
) -> None:
    """Set limits of a user, or of one of their keys (both apply to a key's requests)."""
    from llmasos.access.quotas import QuotaManager

    given = {
        "requests_per_minute": requests_per_minute,
        "tokens_per_day": tokens_per_day,
        "tokens_per_month": tokens_per_month,
        "concurrent_requests": concurrent,
    }
    limits: dict[str, int | None] = {n: v for n, v in given.items() if v is not None}
    if not limits:
        raise InvalidRequestError("give at least one limit, e.g. --requests-per-minute 60")
    with _database() as database:
        quota = QuotaManager(database).set(user, key_id=key, limits=limits)
    who = f"{user}/{key}" if key else user
    shown = ", ".join(f"{n.replace('_', ' ')} {_limit(v)}" for n, v in quota.limits().items())
    console.print(f"{who}: {shown}", highlight=False)


@quota_app.command("clear")
def quota_clear(
    user: Annotated[str, typer.Option("--user", help="The user.")],
    key: Annotated[str | None, typer.Option("--key", help="Only this key's limits.")] = None,
) -> None:
    """Remove every limit of a user (or of one key)."""
    from llmasos.access.quotas import QuotaManager

    with _database() as database:
        QuotaManager(database).clear(user, key_id=key)
    console.print(f"cleared the limits of {f'{user}/{key}' if key else user}", highlight=False)


@quota_app.command("show")
def quota_show(
    user: Annotated[str, typer.Option("--user", help="The user.")],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Show a user's limits and those of their keys, with this window's usage.

    --json fields: user, key_id, requests_per_minute, tokens_per_day, tokens_per_month,
    concurrent_requests, updated_at, used.
    """
    from llmasos.access.quotas import QuotaManager, key_subject, user_subject
    from llmasos.access.users import UserManager

    with _database() as database:
        manager = QuotaManager(database)
        quotas = manager.show(user)
        user_id = UserManager(database).get(user).id
        rows = table(
            Column("applies to", key=True), "requests/min", "tokens/day", "tokens/month",
            "concurrent",
        )  # fmt: skip
        records = []
        for quota in quotas:
            subject = key_subject(quota.key_id) if quota.key_id else user_subject(user_id)
            counts = {period: manager.counter(subject, period) for period in PERIODS}
            records.append({**quota.public(), "used": counts})

            def used(period: str, limit: int | None, counts: dict[str, int] = counts) -> str:
                return "-" if limit is None else f"{counts[period]:,} / {limit:,}"

            rows.add_row(
                f"key {quota.key_id}" if quota.key_id else f"user {user}",
                used("minute", quota.requests_per_minute),
                used("day", quota.tokens_per_day),
                used("month", quota.tokens_per_month),
                used("concurrent", quota.concurrent_requests),
            )
    if as_json:
        print_json(records)
        return
    if not quotas:
        console.print(f"{user} has no limits", highlight=False)
        return
    print_table(rows, highlight=False)


@app.command("usage")
def usage(
    by: Annotated[
        str,
        typer.Option(
            "--by", help="Group by user, model, app, key or day (UTC dates, oldest first)."
        ),
    ] = "user",
    since: Annotated[
        str | None, typer.Option("--since", help="From this date on (e.g. 2025-01-31 or 7d).")
    ] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only this user's usage.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Report usage (requests, tokens, latency, cost) grouped by user, model or app.

    --json fields: group, requests, prompt_tokens, completion_tokens, total_tokens,
    average_latency_ms, cost, priced.
    """
    from llmasos.access.usage import UsageLog, parse_since

    moment = parse_since(since) if since else None
    with _database() as database:
        rows = UsageLog(database).report(by=by, since=moment, user=user)
    if as_json:
        print_json([row.public() for row in rows])
        return
    report = table(
        Column(by, key=True), "requests", "prompt tokens", "completion tokens", "avg latency",
        "cost",
    )  # fmt: skip
    for row in rows:
        cost = f"{row.cost:,.4f}" + ("" if row.priced else " (unpriced models)")
        report.add_row(
            Text(row.group),
            f"{row.requests:,}",
            f"{row.prompt_tokens:,}",
            f"{row.completion_tokens:,}",
            f"{row.average_latency_ms:,.0f} ms",
            cost,
        )
    print_table(report, highlight=False)


@price_app.command("set")
def price_set(
    model: Annotated[str, typer.Argument(help="Model name (a base name prices every tag).")],
    prompt_per_1k: Annotated[
        float, typer.Option("--prompt-per-1k", min=0, help="Price of 1,000 prompt tokens.")
    ],
    completion_per_1k: Annotated[
        float, typer.Option("--completion-per-1k", min=0, help="Price of 1,000 completion tokens.")
    ],
) -> None:
    """Set what a model's tokens cost in usage reports."""
    from llmasos.access.usage import PriceTable

    with _database() as database:
        price = PriceTable(database).set(
            model, prompt_per_1k=prompt_per_1k, completion_per_1k=completion_per_1k
        )
    console.print(
        f"{price.model}: {price.prompt_per_1k:g} per 1k prompt tokens, "
        f"{price.completion_per_1k:g} per 1k completion tokens",
        highlight=False,
    )


@price_app.command("list")
def price_list(
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Show the price table.

    --json fields: model, prompt_per_1k, completion_per_1k, updated_at.
    """
    from llmasos.access.usage import PriceTable

    with _database() as database:
        prices = PriceTable(database).list()
    if as_json:
        print_json([price.public() for price in prices])
        return
    rows = table(Column("model", key=True), "prompt / 1k", "completion / 1k", "updated")
    for price in prices:
        rows.add_row(
            Text(price.model),
            f"{price.prompt_per_1k:g}",
            f"{price.completion_per_1k:g}",
            _when(price.updated_at),
        )
    print_table(rows, highlight=False)


@app.command("audit")
def audit(
    since: Annotated[
        str | None, typer.Option("--since", help="From this date on (e.g. 2025-01-31 or 1d).")
    ] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only this actor's events.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Show the audit log, oldest first.

    --json fields: id, created_at, actor, key_id, action, target, outcome, detail.
    """
    from llmasos.access.audit import AuditLog
    from llmasos.access.usage import parse_since

    moment = parse_since(since) if since else None
    with _database() as database:
        events = AuditLog(database).list(since=moment, actor=actor, limit=limit)
    if as_json:
        print_json([event.public() for event in events])
        return
    rows = table(
        "time", Column("actor", key=True), Column("key", key=True), "action",
        Column("target", key=True), "outcome", "detail",
    )  # fmt: skip
    for event in events:
        cells = (event.actor or "-", event.key_id or "-", event.action, event.target or "-")
        rows.add_row(
            event.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            *(Text(cell) for cell in cells),  # stored text is never read as markup
            event.outcome,
            Text(event.detail or ""),
        )
    print_table(rows, highlight=False)


SEALED_COLUMN_MODULES = (
    "llmasos.agents.store",  # agent tasks and their steps
    "llmasos.knowledge.filesystem",  # fs_chunks.text, fs_summaries.text
    "llmasos.knowledge.graphstore",  # graph entity names and relation predicates
    "llmasos.knowledge.stores",  # kb_chunks.text
    "llmasos.memory.memories",  # memories.text
    "llmasos.tools.personal",  # notes, calendar, reminders, outbox, notifications
    "llmasos.tools.records",  # tool call results
    "llmasos.workflows.store",  # workflow runs' and steps' inputs and outputs
)
"""The modules that register sealed columns (`register_encrypted_column`) besides the
schema's own; a test checks that none is missing."""


def register_sealed_columns() -> None:
    """Import every module that registers a sealed column, so that a rotation re-encrypts
    all of them."""
    for name in SEALED_COLUMN_MODULES:
        importlib.import_module(name)


@keys_app.command("rotate-master")
def keys_rotate_master(
    new_key_stdin: Annotated[
        bool,
        typer.Option(
            "--new-key-stdin",
            help="Read the new key (base64) from stdin; required when LLMASOS_SECRET_KEY is set.",
        ),
    ] = False,
) -> None:
    """Re-encrypt all encrypted content with a new master key and install it."""
    from llmasos.knowledge.filesystem import (
        reindex_after_rotation as reindex_files_after_rotation,
    )
    from llmasos.knowledge.stores import reindex_after_rotation as reindex_knowledge
    from llmasos.memory.memories import reindex_after_rotation
    from llmasos.storage.rotation import rotate_master_key
    from llmasos.tools.personal import reindex_after_rotation as reindex_notes

    register_sealed_columns()

    new_key = None
    if new_key_stdin:
        text = sys.stdin.readline().strip()
        try:
            new_key = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_")
        except (binascii.Error, ValueError):
            raise InvalidRequestError("--new-key-stdin: not base64") from None
    with _database() as database:
        result = rotate_master_key(state.settings, database, new_key=new_key)
        if not new_key_stdin:  # with LLMASOS_SECRET_KEY the next start re-indexes
            reindex_after_rotation(state.settings, database)
            reindex_files_after_rotation(state.settings, database)
            reindex_knowledge(state.settings, database)
            reindex_notes(state.settings, database)
    total = sum(result.reencrypted.values())
    err_console.print(
        f"re-encrypted {total} value(s) in {len(result.reencrypted)} column(s); "
        f"the master key is now {result.fingerprint}",
        highlight=False,
    )
