"""``/v1/notes``: the user's notes (create, list, search, get, edit, delete)."""
