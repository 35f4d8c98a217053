"""The web console: server-rendered pages (Jinja2 + htmx) that ``llmasos serve`` shows at ``/``.

A face beside ``llmasos.server`` and ``llmasos.cli`` (docs/design/console.md): it may import
the layers below it (``llmasos.config``, ``llmasos.errors`` ...) but never
``llmasos.server``, and nothing imports it; the server finds it through the plugin registry
(``PluginRegistry.console``). Every page gets its data from the same HTTP API every client
uses, in process and with the browser's session (`llmasos.webui.api`), or from the browser
itself with the session cookie and the CSRF token: no page reaches around the access layer.
"""
