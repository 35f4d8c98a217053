"""CPU-seconds per process group across a benchmark window (scripts/bench_cluster_path.sh).

    proc_cpu.py snap FILE            # every process's utime+stime now, as JSON
    proc_cpu.py diff BEFORE AFTER TOKENS [--json OUT]
                                     # per group: CPU-s in the window and ms per output token

Groups are named from each process's command line (the Ray replica worker, the API server,
raylet, gcs_server, Ray's agents and monitors, the benchmark client, the rest). A process
that exited inside the window is not counted, so take the second snapshot before stopping
anything. The whole machine's busy time (from /proc/stat) is printed next to the groups.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """Seconds of non-idle CPU time of all cores since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / TICK


def snapshot() -> dict[str, object]:
    procs: dict[str, list[object]] = {}
    threads: dict[str, dict[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2 :].split()
        cpu = (int(rest[11]) + int(rest[12])) / TICK  # utime + stime (all threads)
        start = int(rest[19])
        comm = stat[stat.find("(") + 1 : stat.rfind(")")]
        procs[entry.name] = [comm, cmd.strip()[:300], cpu, start]
        if group(comm, cmd) in THREADED:
            threads[entry.name] = thread_times(entry)
    return {"busy": machine_busy(), "procs": procs, "threads": threads}


THREADED = ("replica worker", "API server")
"""The groups whose CPU is also broken down by thread name."""


def thread_times(proc: Path) -> dict[str, float]:
    """utime+stime of each thread of ``proc``, summed by thread name."""
    names: dict[str, float] = {}
    for task in (proc / "task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2 :].split()
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        names[name] = names.get(name, 0.0) + (int(rest[11]) + int(rest[12])) / TICK
    return names


def group(comm: str, cmd: str) -> str:
    if "ray::ModelReplica" in cmd or comm.startswith("ray::ModelRepl"):
        return "replica worker"
    if "llmasos serve" in cmd or ("-m llmasos serve" in cmd):
        return "API server"
    if "llmasos bench" in cmd:
        return "bench client"
    if "raylet" in comm or "/raylet" in cmd:
        return "raylet"
    if "gcs_server" in comm or "gcs_server" in cmd:
        return "gcs_server"
    if "dashboard" in cmd:
        return "dashboard*"
    if "log_monitor" in cmd or "monitor.py" in cmd or "runtime_env" in cmd:
        return "ray monitors/agents"
    if comm.startswith("ray::") or "default_worker.py" in cmd:
        return "other ray workers"
    if "llmasos cluster" in cmd or "ray start" in cmd:
        return "ray start (waiting)"
    return "others"


def diff(before_path: str, after_path: str, tokens: int) -> dict[str, object]:
    before = json.loads(Path(before_path).read_text())
    after = json.loads(Path(after_path).read_text())
    groups: dict[str, float] = {}
    for pid, (comm, cmd, cpu, start) in after["procs"].items():
        old = before["procs"].get(pid)
        base = old[2] if old is not None and old[3] == start else 0.0
        used = cpu - base
        if used <= 0:
            continue
        name = group(comm, cmd)
        groups[name] = groups.get(name, 0.0) + used
    busy = after["busy"] - before["busy"]
    by_thread: dict[str, dict[str, float]] = {}
    for pid, names in after.get("threads", {}).items():
        comm, cmd, _, start = after["procs"][pid]
        old_proc = before["procs"].get(pid)
        old = before.get("threads", {}).get(pid, {}) if old_proc and old_proc[3] == start else {}
        into = by_thread.setdefault(group(comm, cmd), {})
        for name, cpu in names.items():
            used = cpu - old.get(name, 0.0)
            if used > 0:
                into[name] = round(into.get(name, 0.0) + used, 2)
    return {
        "threads_s": {
            g: dict(sorted(t.items(), key=lambda kv: -kv[1])) for g, t in by_thread.items()
        },
        "tokens": tokens,
        "machine_busy_s": round(busy, 2),
        "groups_s": {k: round(v, 2) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
        "ms_per_token": {
            k: round(1000 * v / tokens, 3) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])
        },
        "machine_ms_per_token": round(1000 * busy / tokens, 3),
    }


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "snap":
        Path(sys.argv[2]).write_text(json.dumps(snapshot()))
        return
    if len(sys.argv) >= 5 and sys.argv[1] == "diff":
        report = diff(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        if len(sys.argv) >= 7 and sys.argv[5] == "--json":
            Path(sys.argv[6]).write_text(json.dumps(report, indent=2))
        print(
            f"  machine busy {report['machine_busy_s']} CPU-s = "
            f"{report['machine_ms_per_token']} ms/token over {report['tokens']} tokens"
        )
        for name, seconds in report["groups_s"].items():  # type: ignore[union-attr]
            per = report["ms_per_token"][name]  # type: ignore[index]
            print(f"    {name:22s} {seconds:7.2f} CPU-s  {per:7.3f} ms/token")
            threads = report["threads_s"].get(name)  # type: ignore[union-attr]
            if threads:
                top = ", ".join(f"{t} {s:.2f}" for t, s in list(threads.items())[:8])
                print(f"      threads (CPU-s): {top}")
        return
    sys.exit(__doc__)


if __name__ == "__main__":
    main()
