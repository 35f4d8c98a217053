"""The admin HTTP API: users, keys, quotas, prices, usage and audit (``/admin/*``)."""
