# reid-nb: `make reproduce` regenerates every table on the synthetic world; `make test` runs the checks.
SHELL := /bin/bash
PY := .venv/bin/python
PROFILE ?= default
PYTHON ?= python3

.PHONY: venv reproduce budget-sweep claims-map publish test export bench gpu-check lock clean-results docs docs-quarto docs-shots lessons lab prune

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

# The budget sweep: the first seed's main rows and the ceiling at 1/4, 1/2 and 2 x the training budget (the finished
# sets of `make reproduce` are reused), then compare with one mAP-against-training-images curve per method.
budget-sweep: venv
	.venv/bin/reid-nb reproduce --profile $(PROFILE) --budget-sweep

# The claims map: the whole reproduce on each of three worlds (the presets as they are), then every claim on every world
# (results/claims/map-$(PROFILE)) and each world's floor / UGA / STGAL / CALR / ceiling mAP (map_rows-$(PROFILE)).
claims-map: venv
	.venv/bin/reid-nb reproduce --profile $(PROFILE) --worlds default duke-like market-mini

# Copy the pages of the finished reproduce (PROFILE) into docs/results/, stamped with the commit and every set's key
# (with the budget sweep's compare when every sweep set is finished).
publish: venv
	.venv/bin/reid-nb publish --profile $(PROFILE)

# Notebooks and package must agree; then the library notebooks and the test suite run.
test: venv
	.venv/bin/nbdev_export
	@if [ -n "$$(git status --porcelain)" ]; then \
	  echo "nbdev_export changed the tree or files are uncommitted/untracked:"; git status --porcelain; exit 1; fi
	.venv/bin/nbdev_test --n_workers 2
	.venv/bin/pytest tests -q

# The library notebooks are committed with their lessons' outputs: this runs every lesson in place (as nbdev_test
# does), makes the outputs machine-independent and runs nbdev_clean (NB="nbs/60_uga.ipynb ...": only those).
lessons: venv
	PATH="$(CURDIR)/.venv/bin:$$PATH" $(PY) docs/execute_lessons.py $(NB)

# JupyterLab on the notebooks, with the project's environment as the kernel.
lab: venv
	.venv/bin/jupyter lab nbs

# The documentation site in _docs/ (git-ignored), from PyPI packages only, no Quarto, no network: docs/render_html.py
# processes the notebooks as nbdev does and renders them with their committed outputs, the spec and, when
# docs/results/ exists, the published results; a sidebar, a contents list per page and an offline search.
docs: venv
	$(PY) docs/render_html.py _docs

# Screenshots of three pages of the site, and of the search box answering a query, in a headless Chromium (when one
# is installed), under $(SHOTS).
SHOTS ?= /tmp/shots
CHROMIUM ?= $(shell command -v chromium chromium-browser google-chrome 2>/dev/null | head -n 1)
SHOT_PAGES ?= index=index.html 60_uga=60_uga.html experiments_stgal=experiments/stgal.html search=60_uga.html?q=travel+time
docs-shots: docs
	@if [ -z "$(CHROMIUM)" ]; then echo "no chromium on the PATH (apt-get install chromium)"; exit 1; fi
	mkdir -p $(SHOTS)
	@for shot in $(SHOT_PAGES); do \
	  out="$(SHOTS)/$${shot%%=*}.png"; \
	  "$(CHROMIUM)" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,1000 \
	    --screenshot="$$out" "file://$(CURDIR)/_docs/$${shot#*=}" 2>/dev/null && echo "$$out"; done

# The same site rendered by Quarto (sidebar, search). Quarto comes from PyPI (quarto-cli, installed into .venv on first
# use, not part of the tested lock file), but building that package downloads the Quarto binary from the Quarto
# project's GitHub releases, so the first run needs that host.
QUARTO_CLI ?= 1.10.19
docs-quarto: venv .venv/bin/quarto
	rm -rf _proc
	PATH="$(CURDIR)/.venv/bin:$$PATH" .venv/bin/nbdev_proc_nbs --file_re '\.(?:ipynb|qmd|html)$$'
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
