"""``/v1/memories`` and ``/v1/recommendations``: a user's long-term memory over HTTP."""
