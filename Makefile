# moorage: `make demo` and `make test` each set up a fresh Debian machine first.
# Debian's python3 (built with PGO and LTO) starts ~2.5 ms sooner than a plain source build
# (such as pyenv's) and runs moorage's code faster: every warm `moor` command gains 2-4 ms
PY ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the code and the tests use (docker.io: the docker CLI for the API's
# acceptance tests, its daemon never started by the install; docker-compose: compose 1.29;
# debootstrap: the demo's Debian base image)
APT_PACKAGES := busybox-static python3-venv tar file runc conmon catatonit tmux procps curl debootstrap \
	libnftables1 nftables aardvark-dns netavark iptables docker.io docker-compose

.PHONY: setup system-packages demo test lint unit bench clean

setup: system-packages $(VENV)/.installed

system-packages:
	@scripts/install-system-packages $(APT_PACKAGES)

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/python -m moorage.cli.launcher $(BIN)/moor  # pip's moor, started without site
	$(BIN)/python -m compileall -q src >/dev/null  # even where PYTHONDONTWRITEBYTECODE is set
	touch $@

lint: setup
	$(BIN)/ruff check src tests bench compat
	$(BIN)/ruff format --check src tests bench compat
	$(BIN)/mypy

# pytest exits 5 when it collects no test: that fails here too
test: lint
	$(BIN)/pytest -q -p no:cacheprovider

unit: setup
	$(BIN)/pytest -q tests/unit

demo: setup
	PATH=$(CURDIR)/$(BIN):$$PATH scripts/demo

bench: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
