"""The `llmasos` command line: a face, like the server.

`root` holds the Typer app, the global flags (generated from `Settings`) and the shared
state; each command group is a module named after it (`models`, `kernel`, `access`, `usage`,
`services`, `apps`, `bench`, `config`, `run`, `serve`); `output` prints tables and
``--json``; `main` is the entry point and the one-line error boundary; `reference` writes
docs/cli.md. Commands parse, call one layer below, and print: orchestration lives in the
layers (e.g. `llmasos.bench.campaign`).

May import: every layer below it. Nothing imports the CLI.
"""
