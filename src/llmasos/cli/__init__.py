"""The `llmasos` command line."""
