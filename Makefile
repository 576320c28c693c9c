# taskcenter: `make run` to start everything, `make test` to run the whole suite
# (on SQLite, then on a throwaway PostgreSQL server: `make test-sqlite`, `make test-postgres`;
# the slow fault tests run once, in the PostgreSQL pass).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
# Development defaults; production sets DEBUG=false, SECRET_KEY and ALLOWED_HOSTS.
export DEBUG ?= true

.PHONY: messages run manage test test-sqlite test-sqlite-all test-postgres test-tools setup install install-dev migrate lint format check clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# .env: DEBUG=true and a development SECRET_KEY for manage.py from a plain shell (bin/dev-env).
setup: install
	$(PY) bin/dev-env .env
	$(PY) manage.py compiletranslations --verbosity 0
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py taskcenter_ensure_superuser

run: setup
	PORT=$(PORT) VENV=$(VENV) bin/run

# Any manage.py command with the development settings, e.g. `make manage ARGS=createsuperuser`.
manage: install
	$(PY) bin/dev-env .env
	$(PY) manage.py $(ARGS)

# CI runs `make test`: the suite on SQLite (the slow fault tests excepted), then the whole
# suite, slow fault tests included, on PostgreSQL, the production engine (`make -k test`
# runs the PostgreSQL pass even when the SQLite one fails). `make test-sqlite-all` runs
# everything on SQLite.
SQLITE_MARKERS ?= not slow
test: test-sqlite test-postgres

test-sqlite: test-tools
	DATABASE_URL= $(PY) -m pytest -m "$(SQLITE_MARKERS)" $(PYTEST_ARGS)

test-sqlite-all: SQLITE_MARKERS = slow or not slow
test-sqlite-all: test-sqlite

# bin/test-postgres starts (and, as root, installs) a PostgreSQL server of its own.
test-postgres: test-tools
	PY=$(PY) bin/test-postgres $(PYTEST_ARGS)

test-tools: install-dev
	bin/install-test-tools
	$(PY) manage.py compiletranslations --verbosity 0
	$(PY) manage.py collectstatic --noinput --verbosity 0

# Extract the strings marked for translation into locale/*/django.po (needs GNU gettext's
# xgettext, a developer tool only: compiling needs none, see compiletranslations).
messages: install
	$(PY) manage.py makemessages --locale zh_Hans --ignore ".venv*" --ignore "test-output" --ignore "var" --no-obsolete

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

check: install
	$(PY) manage.py taskcenter_check

clean:
	rm -rf var/test.sqlite3* test-output .pytest_cache
