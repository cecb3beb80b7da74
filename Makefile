# reid-nb: `make reproduce` regenerates every table on the synthetic world; `make test` runs the checks.
SHELL := /bin/bash
PY := .venv/bin/python
PROFILE ?= default
PYTHON ?= python3

.PHONY: venv reproduce test export bench gpu-check lock clean-results docs docs-quarto prune

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

# The documentation site in _docs/ (git-ignored), from PyPI packages only: nbdev processes the notebooks into _proc/,
# docs/execute_lessons.py gives the chapters' lessons their outputs (notebooks are committed without them), and
# nbconvert renders every notebook as a page (docs/render_html.py).
docs: venv
	rm -rf _proc
	$(PY) docs/render_html.py proc
	PATH="$(CURDIR)/.venv/bin:$$PATH" $(PY) docs/execute_lessons.py _proc
	$(PY) docs/render_html.py html _proc _docs

# The same site rendered by Quarto (sidebar, search). Quarto comes from PyPI (quarto-cli, installed into .venv on first
# use, not part of the tested lock file), but building that package downloads the Quarto binary from the Quarto
# project's GitHub releases, so the first run needs that host.
QUARTO_CLI ?= 1.10.19
docs-quarto: venv .venv/bin/quarto
	rm -rf _proc
	PATH="$(CURDIR)/.venv/bin:$$PATH" .venv/bin/nbdev_proc_nbs --file_re '\.(?:ipynb|qmd|html)$$'
	PATH="$(CURDIR)/.venv/bin:$$PATH" $(PY) docs/execute_lessons.py _proc
	cd _proc && PATH="$(CURDIR)/.venv/bin:$$PATH" quarto render --no-cache
	rm -rf _docs && mv _proc/_docs _docs
	@echo "documentation site: _docs/index.html"

.venv/bin/quarto: | venv
	.venv/bin/pip install --quiet --no-deps quarto-cli==$(QUARTO_CLI)

bench: venv
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# One prepared GPU check (benchmarks/gpu_check.py, at most 8 minutes): training, extraction and kNN speeds and the
# paper profile's --check estimate, into results/gpu-check/gpu-check.{json,md}. GPU_CHECK_ARGS: e.g. --dry (tiny sizes,
# any device), --max-minutes N, --sections NAME..., --check-batch N; `--readme SUMMARY` rewrites README's GPU paragraph.
GPU_CHECK_ARGS ?=
gpu-check: venv
	$(PY) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

# Refresh requirements.lock from a working .venv (after adding or upgrading a package by hand).
lock:
	.venv/bin/pip freeze --exclude-editable | grep -v '^reid-nb' > requirements.lock

# Keep only final weights and history in the checkpoints of finished result sets (NOTEBOOK=uga: one notebook's;
# DRY_RUN=1: only list them). Unfinished runs (<key>.partial) keep everything they need to resume.
prune: venv
	.venv/bin/reid-nb prune $(NOTEBOOK) $(if $(DRY_RUN),--dry-run)

clean-results:
	rm -rf results
