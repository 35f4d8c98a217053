"""The kernel: owns the models and the hardware, and schedules every request onto them.

`client.InProcessEngineClient` is the only door (`interface.EngineClientInterface`): it
renders and tokenizes, admits requests, and streams their outputs. Behind it `residency`
loads and evicts models under a memory budget, `engine` runs one step loop per resident
model (schedule -> execute -> update), `scheduler` picks what runs each step (continuous
batching, chunked prefill, fair share, priorities, preemption), `request` is the ordered
status enum, `metrics` the Prometheus counters, `structured` the output constraints (JSON schema,
grammar-constrained tool calls); `interface` is the system-call contract.

May import: backends (through the plugin registry), models (through `ModelStoreInterface`),
plugins, config, errors, types — never server, access, apps, sdk or cli.
"""
