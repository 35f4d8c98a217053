"""LLMasOS beyond one machine: a Ray cluster of model replicas behind the kernel's interface.

`cluster` wraps Ray's own ``ray start`` / ``ray stop`` and reads its API; `deploy` places
replicas (`replica.ModelReplica`, our kernel and backend in a Ray actor) by the resources
they need, and its `DeploymentController` scales them between ``--min`` and ``--max`` by
the pure policy in `autoscale`; `modelfetch` brings a model's weights to a node by digest,
verified by sha256; `router` is the pure routing logic (prefix affinity, the power of two
choices, one virtual token counter per tenant across the cluster);
`client.ClusterEngineClient` is the `EngineClientInterface` the server uses when
``cluster_address`` is set; `simulation` is the router benchmark. Ray is an optional
dependency (``llmasos[cluster]``): only `replica`, `deploy` and `client` import it
(`autoscale` does not), and nothing imports them at ``import llmasos``.

May import: kernel (its interface and in-process client), models, config, errors, types.
"""
