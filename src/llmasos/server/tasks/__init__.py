"""``/v1/tasks``: agent tasks over HTTP (create, list, show, steps, cancel, approve, deny,
and a server-sent event stream of their steps)."""
