"""Named services: the kernel's higher-level system calls (summarize, translate, classify ...).

A service is data (`interface.ServiceDefinition`, usually YAML), found by
`registry.ServiceRegistry` and run on the kernel by `runner.ServiceRunner`.

May import: the kernel's client, models (through `ModelStoreInterface`), plugins, config,
errors, types — never access, apps, sdk, server or cli.
"""
