"""``/v1/outbox``: mail sent as the user, and sending it."""
