"""The process manager: installs, starts, confines and restarts apps.

An installed app is a directory with a ``llmasos-app.toml`` manifest (`manifest`), kept by
the `store` (install, upgrade, remove; archives and indexes), run as its own process by the
`supervisor` with an API key limited to the permissions it declares, watched by the
`monitor` (restarts, storage quota) and confined by the `sandbox` inside the `runner`. See
docs/design/apps.md. `catalog` lists the built-in apps, `scaffold` writes new ones from the
templates. The apps themselves (`builtin/`, `templates/`) are user programs: they use the
SDK's `llmasos.Application`, and only the public names of `llmasos`.

May import: access, storage, config, errors, net, types — never sdk, server, cli or webui.
"""
