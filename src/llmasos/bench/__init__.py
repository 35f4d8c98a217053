"""Benchmarks: measured speed, never asserted in tests.

`backend` times one backend's steps next to raw llama.cpp; `serve` is the load generator
(TTFT, TPOT, ITL, goodput), `workloads` the request sets, `metrics` the summaries, `peers`
the servers compared against, `rawloop` the in-process batched llama.cpp reference,
`scenarios` fairness and soak, `campaign` runs LLMasOS and the peers in turn, `plot` draws.
``llmasos bench`` only parses options and prints what these return.

May import: backends, models (through `ModelStoreInterface`), config, errors, net, types — it
drives a server over HTTP, never the server's code.
"""
