"""Append-only, named revisions: ``NNNN_what_it_adds.py``; never edit a released one."""
