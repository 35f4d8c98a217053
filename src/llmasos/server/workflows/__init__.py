"""Workflow endpoints: ``/v1/workflows`` (definitions, runs, events, answers, webhooks)."""
