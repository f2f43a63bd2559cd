# Set-up, run, test and benchmark entry points. Each target creates the virtual
# environment first, so a machine with Python 3.11 and make needs nothing else.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PARTITION ?= 2019-10-01

.PHONY: run test test-fast bench lint venv clean dev

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m klaviyo_pipeline run --partition $(PARTITION) --local-klaviyo

dev: $(STAMP)
	home=$${DAGSTER_HOME:-$(CURDIR)/.dagster_home}; mkdir -p "$$home"; \
	  [ -f "$$home/dagster.yaml" ] || cp dagster.yaml "$$home/"; \
	  DAGSTER_HOME="$$home" $(VENV)/bin/dagster dev -w workspace.yaml

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

# Everything but the end-to-end test through dagster-webserver and dagster-daemon.
test-fast: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m "not e2e"

bench: $(STAMP)
	$(PY) -m benchmarks.run

lint: $(STAMP)
	$(VENV)/bin/ruff check klaviyo_pipeline tests benchmarks
	$(VENV)/bin/ruff format --check klaviyo_pipeline tests benchmarks

clean:
	rm -rf $(VENV) .klaviyo_pipeline .dagster_home
