"""The administration page (admins only; anyone else gets 403 before any API call):
users and roles, API keys (a new key's secret shown once), quotas, prices, usage and cost
as charts per user, model, app and day, the audit log with filters, and the scheduler live
from ``/metrics`` (queue depth, running requests per model and per tenant, tokens/s).

Every figure comes from the ``/admin`` API and ``/metrics`` as the signed-in admin. The
charts are inline SVG drawn by the template (no chart library, no script). The scheduler
view re-fetches itself every two seconds; its rates are the change of the kernel's token
counters since the previous fetch of this console process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from prometheus_client.parser import text_string_to_metric_families
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmasos.webui.actions import back, call, form_of, number, signed_in, text
from llmasos.webui.api import ApiError
from llmasos.webui.console import Viewer, console_of

PATH = "/administration"
SECTIONS = ("users", "keys", "quotas", "prices", "usage", "audit", "scheduler")
USAGE_GROUPS = ("user", "model", "app", "day")
ROLES = ("admin", "developer", "user")
QUOTA_FIELDS = ("requests_per_minute", "tokens_per_day", "tokens_per_month", "concurrent_requests")


@dataclass
class Sample:
    """The kernel's counters at one moment, to turn the next sample into rates."""

    at: float = 0.0
    generated: dict[str, float] = field(default_factory=dict)
    tenants: dict[str, float] = field(default_factory=dict)


_last = Sample()


def scheduler_view(metrics_text: str, now: float) -> dict[str, Any]:
    """Per model: running, waiting, KV cache use, tokens/s; per tenant: running requests
    and tokens/s (rates since the previous call; the first call has none)."""
    global _last
    models: dict[str, dict[str, float]] = {}
    generated: dict[str, float] = {}
    tenants: dict[str, float] = {}
    tenant_running: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            model = sample.labels.get("model_name") or sample.labels.get("model") or "-"
            if sample.name == "vllm:num_requests_running":
                models.setdefault(model, {})["running"] = sample.value
            elif sample.name == "vllm:num_requests_waiting":
                models.setdefault(model, {})["waiting"] = sample.value
            elif sample.name == "vllm:kv_cache_usage_perc":
                models.setdefault(model, {})["kv_cache"] = sample.value
            elif sample.name == "vllm:generation_tokens_total":
                generated[model] = generated.get(model, 0.0) + sample.value
            elif sample.name == "llmasos:tenant_tokens_total":
                tenant = sample.labels.get("tenant", "-")
                tenants[tenant] = tenants.get(tenant, 0.0) + sample.value
            elif sample.name == "llmasos:tenant_requests_running":
                tenant = sample.labels.get("tenant", "-")
                tenant_running[tenant] = tenant_running.get(tenant, 0.0) + sample.value
    elapsed = now - _last.at if _last.at else 0.0

    def rate(now_value: float, before: float | None) -> float | None:
        if not elapsed or before is None:
            return None
        return max(now_value - before, 0.0) / elapsed

    for model, total in generated.items():
        models.setdefault(model, {})["tokens_per_s"] = rate(total, _last.generated.get(model))  # type: ignore[assignment]
    per_tenant = {
        name: {
            "running": tenant_running.get(name, 0.0),
            "tokens_per_s": rate(tenants[name], _last.tenants.get(name))
            if name in tenants
            else None,
        }
        for name in sorted(tenants.keys() | tenant_running.keys())
    }
    _last = Sample(now, generated, tenants)
    return {
        "models": models,
        "tenants": per_tenant,
        "queue": sum(m.get("waiting", 0) for m in models.values()),
        "running": sum(m.get("running", 0) for m in models.values()),
    }


def chart(rows: list[dict[str, Any]], value: str) -> list[dict[str, Any]]:
    """Rows with ``fraction`` of the largest ``value``, for bar widths."""
    top = max((float(r.get(value) or 0) for r in rows), default=0.0)
    return [{**r, "fraction": (float(r.get(value) or 0) / top) if top else 0.0} for r in rows]


async def require_admin(request: Request) -> Viewer:
    viewer = await signed_in(request)
    if not viewer.is_admin:
        raise ApiError(403, "Only an administrator may open this page.", "permission_error")
    return viewer


async def admin_page(request: Request) -> Response:
    return await _section(request, request.path_params.get("section", "users"))


async def _section(request: Request, section: str, **extra: Any) -> Response:
    console = console_of(request)
    viewer = await require_admin(request)
    if section not in SECTIONS:
        raise ApiError(404, f"no section {section[:40]!r}")
    api, query = console.api, request.query_params
    context: dict[str, Any] = {}
    if section in ("users", "keys", "quotas"):
        context["users"] = (await api.get(request, "/admin/users"))["data"]
    if section == "keys":
        context["keys"] = (await api.get(request, "/admin/keys"))["data"]
    elif section == "quotas":
        who = query.get("user") or (context["users"][0]["name"] if context["users"] else "")
        context["quota_user"] = who
        context["quotas"] = (
            (await api.get(request, f"/admin/quotas/{quote(who)}"))["data"] if who else []
        )
    elif section == "prices":
        context["prices"] = (await api.get(request, "/admin/prices"))["data"]
    elif section == "usage":
        since = query.get("since") or "30d"
        context["since"] = since
        context["charts"] = {
            by: chart(
                (await api.get(request, "/admin/usage", by=by, since=since))["data"], "total_tokens"
            )
            for by in USAGE_GROUPS
        }
    elif section == "audit":
        filters = {"since": query.get("since") or None, "actor": query.get("actor") or None}
        context["filters"] = filters
        context["action_filter"] = query.get("action", "")
        events = (await api.get(request, "/admin/audit", limit=500, **filters))["data"]
        if context["action_filter"]:
            events = [e for e in events if context["action_filter"] in e["action"]]
        context["events"] = list(reversed(events))[:200]
    elif section == "scheduler":
        metrics = await api.get(request, "/metrics")
        context["scheduler"] = scheduler_view(
            metrics if isinstance(metrics, str) else "", time.monotonic()
        )
    template = (
        "admin/part_scheduler.html" if query.get("part") == "scheduler" else "admin/index.html"
    )
    return console.render(
        request, template, viewer=viewer, area="admin", section=section, sections=SECTIONS,
        roles=ROLES, quota_fields=QUOTA_FIELDS, **context, **extra,
    )  # fmt: skip


async def admin_action(request: Request) -> Response:
    await require_admin(request)
    form = await form_of(request)
    action = request.path_params["action"]
    body: dict[str, Any]
    if action == "create-user":
        body = {"name": text(form, "name"), "role": text(form, "role") or "user"}
        if text(form, "password"):
            body["password"] = form["password"]
        await call(request, "POST", "/admin/users", form, json=body)
        return back(f"{PATH}/users")
    if action == "patch-user":
        patch: dict[str, Any] = {"role": text(form, "role")}
        patch["disabled"] = form.get("disabled") == "on"
        await call(request, "PATCH", f"/admin/users/{quote(text(form, 'name'))}", form, json=patch)
        return back(f"{PATH}/users")
    if action == "create-key":
        body = {"name": text(form, "name"), "user": text(form, "user") or None}
        scopes = [s.strip() for s in text(form, "scopes").split(",") if s.strip()]
        if scopes:
            body["scopes"] = scopes
        created = await call(request, "POST", "/admin/keys", form, json=body)
        return await _section(request, "keys", created=created)
    if action == "revoke-key":
        await call(request, "DELETE", f"/admin/keys/{quote(text(form, 'key_id'))}", form)
        return back(f"{PATH}/keys")
    if action == "quota":
        who = text(form, "user")
        limits = {name: number(form, name) for name in QUOTA_FIELDS}
        await call(request, "PUT", f"/admin/quotas/{quote(who)}", form, json=limits)
        return back(f"{PATH}/quotas?user={quote(who)}")
    if action == "price":
        try:
            price = {k: float(text(form, k) or 0) for k in ("prompt_per_1k", "completion_per_1k")}
        except ValueError:
            raise ApiError(400, "a price is a number (per 1,000 tokens)") from None
        await call(request, "PUT", f"/admin/prices/{quote(text(form, 'model'))}", form, json=price)
        return back(f"{PATH}/prices")
    raise ApiError(404, f"no action {action[:40]!r}")


routes = [
    Route(PATH, admin_page, methods=["GET"]),
    Route(PATH + "/{section}", admin_page, methods=["GET"]),
    Route(PATH + "/do/{action}", admin_action, methods=["POST"]),
]
