"""Userland: the programs that ship with LLMasOS, written like any third-party program.

`apps` holds the built-in apps (assistant, summarizer, translator, writer, tutor), each a
directory with ``llmasos-app.toml`` and ``app.py`` that ``llmasos app install builtin:NAME``
installs. Later issues add example workflows here.

May import: only the public names of the top-level `llmasos` package (the SDK and the
errors) — an import-linter contract and tests/apps/test_user_programs.py check it. Nothing
imports userland: the process manager finds its files on disk (`llmasos.apps.catalog`).
"""
