# linemon: `make demo` runs the simulated plant; `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test install services lint bench soak clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/linemon demo

# Installs and builds what the suite needs beyond Python (mosquitto, influxd),
# then runs ruff and every test. Nothing is skipped for a missing service.
services:
	bash deploy/test-services.sh

test: install services
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .

bench: install services
	$(BIN)/python -m bench

# Figure 3-6 for an hour instead of make bench's 10 minutes (the RSS growth target is for this).
soak: install services
	$(BIN)/python -m bench.sustained --minutes 60

clean:
	rm -rf $(VENV) linemon-data .pytest_cache
