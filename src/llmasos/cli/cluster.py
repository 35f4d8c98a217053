"""``llmasos cluster start|join|status|stop`` and ``llmasos deploy``: LLMasOS on a Ray cluster.

Thin wrappers over Ray's own ``ray start`` / ``ray stop`` (see docs/design/cluster.md): the
head runs the API server and the database, worker nodes run model replicas. Ray is an
optional dependency (``pip install 'llmasos[cluster]'``), imported only by these commands.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from llmasos.cli.output import JSON_OPTION_HELP, Column, print_json, print_table, table
from llmasos.cli.root import app, console, state
from llmasos.config import parse_size
from llmasos.errors import ClusterError

cluster_app = typer.Typer(
    help="Start, join, inspect and stop a Ray cluster of LLMasOS nodes.", no_args_is_help=True
)
app.add_typer(cluster_app, name="cluster")

NumCpus = Annotated[
    int | None, typer.Option("--num-cpus", min=0, help="CPU cores this node offers to Ray.")
]
NumGpus = Annotated[
    int | None, typer.Option("--num-gpus", min=0, help="GPUs this node offers (default: all).")
]
Memory = Annotated[
    str | None, typer.Option("--memory", help="Memory this node offers to replicas ('8GiB').")
]
ObjectStore = Annotated[
    str | None,
    typer.Option("--object-store-memory", help="Size of Ray's shared object store ('1GiB')."),
]
Resources = Annotated[
    str | None,
    typer.Option("--resources", help="Custom resources as JSON ('{\"fast-disk\": 1}')."),
]
TempDir = Annotated[
    str | None, typer.Option("--temp-dir", help="Ray's session and log directory on this node.")
]
Block = Annotated[
    bool,
    typer.Option(
        "--block", help="Stay in the foreground until stopped (for systemd or a container)."
    ),
]
Address = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="The cluster (HOST:PORT); default the cluster_address setting, else the local one.",
    ),
]


def _node(
    num_cpus: int | None,
    num_gpus: int | None,
    memory: str | None,
    object_store_memory: str | None,
    resources: str | None,
    temp_dir: str | None,
    block: bool,
) -> dict[str, Any]:
    return {
        "num_cpus": num_cpus,
        "num_gpus": num_gpus,
        "memory": parse_size(memory) if memory else None,
        "object_store_memory": parse_size(object_store_memory) if object_store_memory else None,
        "resources": resources,
        "temp_dir": temp_dir,
        "block": block,
    }


def _address(address: str | None) -> str:
    return address or state.settings.cluster_address or "auto"


@cluster_app.command("start")
def cluster_start(
    head: Annotated[bool, typer.Option("--head", help="Start the head node (required).")] = False,
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="Port the head listens on.")
    ] = 6379,
    host: Annotated[
        str | None, typer.Option("--host", help="Address the other nodes reach the head at.")
    ] = None,
    num_cpus: NumCpus = None,
    num_gpus: NumGpus = None,
    memory: Memory = None,
    object_store_memory: ObjectStore = None,
    resources: Resources = None,
    temp_dir: TempDir = None,
    block: Block = False,
) -> None:
    """Start the head node of a cluster here (`ray start --head`); prints the join command."""
    from llmasos.distributed import cluster

    if not head:
        raise typer.BadParameter(
            "this starts the head node: add --head (on a worker, use `llmasos cluster join "
            "ADDRESS`)",
            param_hint="--head",
        )
    node = _node(num_cpus, num_gpus, memory, object_store_memory, resources, temp_dir, block)
    if block:
        console.print(f"starting the head on port {port} (Ctrl-C stops it)")
    address = cluster.start_head(port, host=host, **node)
    console.print(f"head started at {address}", highlight=False)
    console.print(f"join a worker with: llmasos cluster join {address}", highlight=False)
    console.print(
        f"serve through it with: llmasos serve --cluster-address {address}", highlight=False
    )


@cluster_app.command("join")
def cluster_join(
    address: Annotated[str, typer.Argument(help="The head's HOST:PORT.")],
    num_cpus: NumCpus = None,
    num_gpus: NumGpus = None,
    memory: Memory = None,
    object_store_memory: ObjectStore = None,
    resources: Resources = None,
    temp_dir: TempDir = None,
    block: Block = False,
) -> None:
    """Join this machine to the cluster at ADDRESS as a worker node (`ray start --address`)."""
    from llmasos.distributed import cluster

    node = _node(num_cpus, num_gpus, memory, object_store_memory, resources, temp_dir, block)
    cluster.join(address, **node)
    console.print(f"joined the cluster at {address}", highlight=False)


@cluster_app.command("stop")
def cluster_stop(
    force: Annotated[bool, typer.Option("--force", help="SIGKILL instead of SIGTERM.")] = False,
) -> None:
    """Stop this machine's Ray processes (`ray stop`: all of them, head or worker)."""
    from llmasos.distributed import cluster

    console.print(cluster.stop(force=force), highlight=False)


def _resources(values: dict[str, float]) -> str:
    parts = []
    for key, value in values.items():
        if key in ("memory", "object_store_memory"):
            parts.append(f"{key} {value / 2**30:.1f}GiB")
        else:
            parts.append(f"{key} {value:g}")
    return ", ".join(parts)


@cluster_app.command("status")
def cluster_status(
    address: Address = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """The cluster's nodes, free resources and model replicas."""
    from llmasos.distributed import cluster

    result = cluster.status(_address(address))
    if as_json:
        print_json(result.to_json())
        return
    console.print(f"cluster {result.address}", highlight=False)
    nodes = table(Column("NODE", key=True), "ADDRESS", "ROLE", "STATE", "RESOURCES")
    for node in result.nodes:
        nodes.add_row(
            node.node_id[:12],
            node.address,
            "head" if node.head else "worker",
            "alive" if node.alive else "dead",
            _resources(node.resources),
        )
    print_table(nodes)
    console.print(f"available: {_resources(result.available)}", highlight=False)
    if result.replicas:
        replicas = table(Column("REPLICA", key=True), "STATE", "NODE", "RUNNING", "WAITING")
        for replica in result.replicas:
            replicas.add_row(
                replica["name"],
                replica["state"],
                str(replica.get("node_id", ""))[:12],
                str(replica.get("running", "")),
                str(replica.get("waiting", "")),
            )
        print_table(replicas)
    for scaler in result.autoscaling:
        policy = scaler["policy"]
        console.print(
            f"{scaler['model']}: autoscaling {policy['min_replicas']}-{policy['max_replicas']} "
            f"replicas on queue depth (now {scaler['replicas']}, load {scaler['load']:g}, "
            f"target {scaler['target']:g} per replica)",
            highlight=False,
        )


@app.command("deploy")
def deploy(
    model: Annotated[str, typer.Argument(help="A model in this machine's store.")],
    replicas: Annotated[
        int | None,
        typer.Option(
            "--replicas",
            min=0,
            help="Replicas to run (with --min/--max: to start with); 0 removes the model.",
        ),
    ] = None,
    min_replicas: Annotated[
        int | None,
        typer.Option("--min", min=1, help="Autoscale: never fewer replicas than this."),
    ] = None,
    max_replicas: Annotated[
        int | None,
        typer.Option("--max", min=1, help="Autoscale: never more replicas than this."),
    ] = None,
    target: Annotated[
        float,
        typer.Option(
            "--target-queue",
            min=0,
            help="Autoscale: requests per replica to aim at; 0 = its batch size.",
        ),
    ] = 0.0,
    upscale_delay: Annotated[
        float,
        typer.Option("--upscale-delay", min=0, help="Autoscale: seconds of overload to grow."),
    ] = 5.0,
    downscale_delay: Annotated[
        float,
        typer.Option("--downscale-delay", min=0, help="Autoscale: seconds of low load to shrink."),
    ] = 60.0,
    num_cpus: Annotated[
        float, typer.Option("--cpus-per-replica", min=0.1, help="CPU cores each replica holds.")
    ] = 1.0,
    gpus: Annotated[
        float, typer.Option("--gpus-per-replica", min=0, help="GPUs each replica holds.")
    ] = 0.0,
    memory: Annotated[
        str | None,
        typer.Option(
            "--memory-per-replica", help="Memory each replica holds ('2GiB'); default 2x model."
        ),
    ] = None,
    cache_dir: Annotated[
        str,
        typer.Option("--cache-dir", help="Where replicas keep model files on their node."),
    ] = "~/.cache/llmasos/cluster",
    copy: Annotated[
        bool,
        typer.Option(
            "--copy", help="Always copy the model from the head, even where its path is readable."
        ),
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help=(
                "What serves the replicas: llmasos (our kernel), vllm (vLLM's server), or "
                "auto: vllm when replicas hold GPUs, else llmasos."
            ),
        ),
    ] = "auto",
    tensor_parallel: Annotated[
        int,
        typer.Option("--tensor-parallel", min=1, help="vLLM: GPUs of a node per replica."),
    ] = 1,
    pipeline_parallel: Annotated[
        int,
        typer.Option("--pipeline-parallel", min=1, help="vLLM: nodes per replica (Ray)."),
    ] = 1,
    compile_graph: Annotated[
        bool,
        typer.Option(
            "--compile/--eager",
            help="vLLM: torch.compile and CUDA graphs (faster decode, minutes to start).",
        ),
    ] = False,
    address: Address = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_OPTION_HELP)] = False,
) -> None:
    """Run REPLICAS replicas of MODEL on the cluster (from the head; see `cluster status`).

    With --min and --max the deployment scales itself on queue depth between the two."""
    from llmasos.distributed import cluster

    cluster.require_ray()
    from llmasos.distributed.autoscale import AutoscalePolicy
    from llmasos.distributed.deploy import EngineSpec, ReplicaResources
    from llmasos.distributed.deploy import deploy as deploy_model

    policy = None
    if min_replicas is not None or max_replicas is not None:
        if min_replicas is None or max_replicas is None:
            raise ClusterError("autoscaling needs both --min and --max")
        if replicas == 0:
            raise ClusterError("--replicas 0 removes the model: leave out --min and --max")
        policy = AutoscalePolicy(
            min_replicas,
            max_replicas,
            target=target,
            upscale_delay=upscale_delay,
            downscale_delay=downscale_delay,
        )
    count = replicas if replicas is not None else (min_replicas or 1)

    resources = ReplicaResources(
        num_cpus=num_cpus, memory=parse_size(memory) if memory else None, num_gpus=gpus
    )
    engine_spec = EngineSpec(engine, tensor_parallel, pipeline_parallel, eager=not compile_graph)
    engine_spec = engine_spec.resolve(resources)
    with cluster.connected(_address(address)):
        reports = deploy_model(
            state.settings,
            state.store,
            model,
            count,
            resources=resources,
            cache_dir=cache_dir,
            copy=copy,
            autoscale=policy,
            engine=engine_spec,
        )
    if as_json:
        print_json(reports)
        return
    if not reports:
        console.print(f"{model}: no replicas", highlight=False)
        return
    for report in reports:
        console.print(
            f"{report['name']}: {report['state']} on node {str(report.get('node_id'))[:12]} "
            f"(model {report.get('fetched', '?')}"
            + (f", vLLM {report.get('dtype')}" if report.get("engine") == "vllm" else "")
            + ")",
            highlight=False,
        )
