"""Applications: programs built on the kernel's syscalls.

`Application` turns typed Python functions into HTTP routes around a model
(``llmasos.Application``). Manifests, permissions and the app store come later
(see docs/design/apps.md).
"""

from llmasos.apps.application import Application, Route
from llmasos.apps.params import ParameterError

__all__ = ["Application", "ParameterError", "Route"]
