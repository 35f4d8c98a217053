"""Applications: programs built on the kernel's syscalls.

`Application` turns typed Python functions into HTTP routes around a model
(``llmasos.Application``). An installed app is a directory with a ``llmasos-app.toml``
manifest (`manifest`), kept by the `store`, run as its own process by the `supervisor`
with an API key limited to the permissions it declares (see docs/design/apps.md).
"""

from llmasos.apps.application import Application, Route
from llmasos.apps.params import ParameterError

__all__ = ["Application", "ParameterError", "Route"]
