"""The built-in apps shipped with LLMasOS: assistant, summarizer, translator, writer, tutor.

Each is a directory here with ``llmasos-app.toml`` and ``app.py``: an ordinary user program
written with `llmasos.Application` that reaches the kernel only through `llmasos.Client` (so
only with the capability key its manifest earns), and a template to copy. The directories are
packages only so that their files ship in the wheel; `llmasos.apps.catalog` finds them.

May import: only the public names of the top-level `llmasos` package, like any third-party
app (an import-linter contract checks it).
"""
