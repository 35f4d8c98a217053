"""Remote providers: OpenAI-compatible endpoints served as models of this LLMasOS.

`registry` keeps what ``llmasos remote add`` registered (``$LLMASOS_HOME/remotes.toml``:
URL, the name of the environment variable that holds the key, never the key); `upstream`
speaks the OpenAI wire protocol to one endpoint with httpx and turns every fault into an
`LLMasOSError`; `client.RemoteEngineClient` is an `EngineClientInterface` in front of the
server's own kernel client that sends requests for remote models upstream, behind one fair
queue per remote. No Ray, no server: the HTTP faces keep auth, quotas and metering.
"""

from llmasos.distributed.remote.client import RemoteEngineClient
from llmasos.distributed.remote.registry import RemoteProvider, RemoteRegistry, remotes_file

__all__ = ["RemoteEngineClient", "RemoteProvider", "RemoteRegistry", "remotes_file"]
