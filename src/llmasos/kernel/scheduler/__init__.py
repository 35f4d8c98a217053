"""Scheduling policies and the step scheduler."""
