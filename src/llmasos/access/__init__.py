"""Identity and access: users, roles, API keys, quotas, usage, and the `Principal` a request
runs as.

`UserManager` and `KeyManager` keep users and keys in the storage layer; `KeyManager.verify`
turns a presented API key into a `Principal` or raises `AuthenticationError` (401) /
`PermissionDeniedError` (403). `QuotaManager` admits and charges requests, `UsageLog` meters
them, `AuditLog` appends what happened. The server decides *when* to call these; this
package decides *who* someone is and *what* they may do.

May import: storage, config, errors, types — never the kernel, server, cli, apps or sdk.
"""

from llmasos.access.audit import AuditLog, AuditRecord
from llmasos.access.keys import KEY_PREFIX, CreatedKey, KeyInfo, KeyManager
from llmasos.access.principal import ROLE_SCOPES, ROLES, SCOPES, Principal
from llmasos.access.users import UserInfo, UserManager

__all__ = [
    "KEY_PREFIX",
    "ROLES",
    "ROLE_SCOPES",
    "SCOPES",
    "AuditLog",
    "AuditRecord",
    "CreatedKey",
    "KeyInfo",
    "KeyManager",
    "Principal",
    "UserInfo",
    "UserManager",
]
