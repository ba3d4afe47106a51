# gendev-release: two commands do all setup on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOME_DIR ?= .gendev
SPEC ?= dags/releases/demo.yaml

.PHONY: venv tools demo test lint down clean

# --compile-bytecode: every Airflow process (each task, trigger and CLI run) imports thousands of
# modules; without .pyc files (uv writes none by default, and PYTHONDONTWRITEBYTECODE stops Python
# writing them) each process compiles them again: measured 70 s -> 53 s for one demo release.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip uv
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

# Debian packages the demo and the tests run on loopback: git (the risk step reads history),
# Prometheus (monitoring reads its HTTP API) and nginx (the local target's nginx router mode).
# Installed with apt-get when missing and we are root.
TOOLS := git prometheus nginx
tools:
	@missing=""; for tool in $(TOOLS); do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	  else echo "missing:$$missing; install with: sudo apt-get install$$missing"; exit 1; fi; \
	fi

demo: venv tools
	@echo "== 1/2: a good release (1.1.0) =="
	$(VENV)/bin/gendev-release run $(SPEC) --home $(HOME_DIR) --set version=1.1.0
	@echo
	@echo "== 2/2: a broken release (1.2.0-broken): it must roll back to 1.1.0 =="
	@$(VENV)/bin/gendev-release run $(SPEC) --home $(HOME_DIR) --set version=1.2.0-broken; \
	  status=$$?; if [ $$status -ne 1 ]; then echo "expected exit 1 (rolled back), got $$status"; exit 1; fi
	@echo
	@echo "Reports and evidence: $(HOME_DIR)/evidence/release__demo/<run id>/release-report.md"
	@echo "Notifications sent:   $(HOME_DIR)/notifications/demo.jsonl"
	@echo "The demo service keeps running (router URL in $(HOME_DIR)/targets/demo/state.json)."
	@echo "Stop it with:         make down   (or: $(VENV)/bin/gendev-release down $(SPEC) --home $(HOME_DIR))"

down: venv
	$(VENV)/bin/gendev-release down $(SPEC) --home $(HOME_DIR)

test: venv tools
	$(PY) -m pytest -q

# ruff, then mypy on a copy of the package laid out as installed (operators/, sensors/ and plugins/
# inside gendev_release/): mypy cannot follow setuptools' editable import hook.
lint: venv
	$(VENV)/bin/ruff check .
	rm -rf .mypy-tree && mkdir -p .mypy-tree && cp -r gendev_release .mypy-tree/
	for d in operators sensors plugins; do cp -r $$d .mypy-tree/gendev_release/$$d; done
	cd .mypy-tree && ../$(VENV)/bin/mypy --config-file ../pyproject.toml --cache-dir ../.mypy_cache -p gendev_release
	rm -rf .mypy-tree

clean: down
	rm -rf $(HOME_DIR)
