"""Which weight format of a model this machine serves fastest: the store's tuning record.

A model's weights can be served in several GGUF formats; which one runs fastest depends on
the CPU (llama.cpp repacks Q4_0 for AVX2 and ARM kernels at load, not Q4_1; AVX-512 and bf16
change the answer again). ``llmasos tune`` measures the candidates (`llmasos.toolchain.tune`)
and records its choice here, per machine and per source manifest, in ``tuning.json`` at the
store's root::

    {"<machine fingerprint>": {"sha256:<source manifest>": {"digest": "sha256:<derived>",
                                                            "format": "Q4_0", ...}}}

The fingerprint is the CPU architecture and the instruction-set flags that decide the
speed of llama.cpp's kernels, so a copied home directory on another CPU tunes anew. The
record holds facts only; `llmasos.models.repository` serves the chosen version.
"""

from __future__ import annotations

import functools
import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmasos.models.blobs import write_text_atomic

SPEED_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
    "sve",
    "i8mm",
    "bf16",
)
"""CPU flags (as /proc/cpuinfo spells them) that change which format is fastest."""


@functools.cache
def _this_machine() -> str:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        cpuinfo = ""
    return machine_fingerprint(cpuinfo)


def machine_fingerprint(cpuinfo: str | None = None) -> str:
    """``x86_64:avx,avx2,f16c,fma`` — the architecture and the speed-relevant CPU flags
    (of this machine when ``cpuinfo`` is None)."""
    if cpuinfo is None:
        return _this_machine()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
            break
    present = sorted(f for f in SPEED_FLAGS if f in flags)
    return f"{platform.machine() or 'unknown'}:{','.join(present)}"


@dataclass(frozen=True)
class TuningChoice:
    """What ``llmasos tune`` chose for one source manifest on one machine."""

    source: str
    """Digest of the manifest that was tuned (the model as the user has it)."""
    digest: str
    """Digest of the version to serve (``source`` itself when the original is fastest)."""
    format: str
    """Its weight format (``Q4_0`` ...)."""
    measured: dict[str, Any] = field(default_factory=dict)
    """Per format: decode tok/s, prefill tok/s, perplexity (see `llmasos.toolchain.tune`)."""
    tuned_at: str = ""


class TuningRecord:
    """``tuning.json``: read and written whole, under the store's lock by the caller."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, dict[str, dict[str, Any]]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, source: str, machine: str | None = None) -> TuningChoice | None:
        entry = self._load().get(machine or machine_fingerprint(), {}).get(source)
        if not isinstance(entry, dict):
            return None
        try:
            return TuningChoice(**entry)
        except TypeError:
            return None

    def put(self, choice: TuningChoice, machine: str | None = None) -> None:
        data = self._load()
        data.setdefault(machine or machine_fingerprint(), {})[choice.source] = asdict(choice)
        write_text_atomic(self.path, json.dumps(data, indent=2, sort_keys=True))

    def forget(self, source: str, machine: str | None = None) -> bool:
        data = self._load()
        removed = data.get(machine or machine_fingerprint(), {}).pop(source, None)
        if removed is not None:
            write_text_atomic(self.path, json.dumps(data, indent=2, sort_keys=True))
        return removed is not None
