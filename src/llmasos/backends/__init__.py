"""Inference backends (the drivers); see `interface.py` for the contract."""
