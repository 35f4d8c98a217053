"""``/v1/notifications``: the inbox, marking read, the live stream (SSE) and the webhook."""
