"""Benchmarks: backend step speed (`llmasos.bench.backend`); serving benchmarks join later."""
