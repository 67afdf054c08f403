# Switchboard. `make demo` and `make test` work from a fresh clone with nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# The services run (PostgreSQL + Redis) uses its own database and Redis db so it never touches yours.
SERVICES_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/switchboard
SERVICES_BROKER_URL ?= redis://127.0.0.1:6379/15
SERVICES_AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/%2F
PYTEST_ARGS ?=

.PHONY: install demo test test-services lint migrations-check ci clean

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/python manage.py demo --port $(PORT)

test: install
	env -u DATABASE_URL -u DRAMATIQ_BROKER_URL -u HUB_PROFILE -u SECRET_KEY \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

test-services: install
	env -u HUB_PROFILE -u SECRET_KEY \
		DATABASE_URL=$(SERVICES_DATABASE_URL) DRAMATIQ_BROKER_URL=$(SERVICES_BROKER_URL) \
		HUB_TEST_SERVICES=1 HUB_TEST_AMQP_URL=$(SERVICES_AMQP_URL) \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

migrations-check: install
	env -u DATABASE_URL -u DRAMATIQ_BROKER_URL $(BIN)/python manage.py makemigrations --check --dry-run

ci: test test-services lint migrations-check

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
