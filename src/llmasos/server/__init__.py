"""The HTTP server, a face: OpenAI-compatible ``/v1``, Ollama-compatible ``/api``, the
admin API, named services, app proxying, ``/health`` and ``/metrics``.

`app.create_app` builds the FastAPI app and its middleware stack (request id, CORS, body
limit, then `auth` and `metering` when authentication is on). `context` holds what a
request carries (its id, principal, tenant, usage). Each endpoint family is a package with
``router.py`` (routes), ``protocol.py`` (pydantic bodies) and ``serving.py`` (logic).

May import: sdk-level and everything below it (kernel client, models through
`ModelStoreInterface`, services, access, storage, apps). Nothing imports the server.
"""
