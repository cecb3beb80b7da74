# reid-nb: `make reproduce` regenerates every table on the synthetic world; `make test` runs the checks.
SHELL := /bin/bash
PY := .venv/bin/python
PROFILE ?= default
PYTHON ?= python3

.PHONY: venv reproduce test export bench lock clean-results prune

venv: .venv/.installed

.venv/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv .venv
	.venv/bin/pip install --quiet --no-deps -r requirements.lock
	.venv/bin/pip install --quiet --no-deps -e .
	touch $@

export: venv
	.venv/bin/nbdev_export

# Regenerate the synthetic world and every result table into results/ (PROFILE=smoke for a quick pass).
reproduce: venv
	.venv/bin/reid-nb reproduce --profile $(PROFILE)

# Notebooks and package must agree; then the library notebooks and the test suite run.
test: venv
	.venv/bin/nbdev_export
	@if [ -n "$$(git status --porcelain)" ]; then \
	  echo "nbdev_export changed the tree or files are uncommitted/untracked:"; git status --porcelain; exit 1; fi
	.venv/bin/nbdev_test --n_workers 2
	.venv/bin/pytest tests -q

bench: venv
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# Refresh requirements.lock from a working .venv (after adding or upgrading a package by hand).
lock:
	.venv/bin/pip freeze --exclude-editable | grep -v '^reid-nb' > requirements.lock

# Keep only final weights and history in the checkpoints of finished result sets (NOTEBOOK=uga: one notebook's;
# DRY_RUN=1: only list them). Unfinished runs (<key>.partial) keep everything they need to resume.
prune: venv
	.venv/bin/reid-nb prune $(NOTEBOOK) $(if $(DRY_RUN),--dry-run)

clean-results:
	rm -rf results
