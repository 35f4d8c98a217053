"""Scheduling: `interface.SchedulerInterface` and the step scheduler with its policies
(``fcfs``, ``priority``, ``fair`` — the Virtual Token Counter).

Knows requests only by token counts, priorities and tenants; imports nothing above
``llmasos.kernel.request``.
"""
