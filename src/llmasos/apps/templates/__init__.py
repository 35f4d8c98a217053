"""The app templates of ``llmasos app new``: each module's ``FILES`` holds one app as text.

The apps they write are user programs: they import only the public names of the top-level
`llmasos` package (an import-linter contract checks these modules). `llmasos.apps.scaffold`
reads them.
"""
