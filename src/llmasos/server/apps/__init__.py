"""``/apps/NAME/...``: the server's reverse proxy to installed apps that are running."""
