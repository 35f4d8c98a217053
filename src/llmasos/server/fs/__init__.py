"""``/v1/fs/...``: a user's semantic file space over HTTP (files, versions, find, summaries,
shares and ``ask``)."""
