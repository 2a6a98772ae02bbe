# hpcrun: the README's two commands are `make demo` and `make test`.
# Everything a target needs it installs itself (apt packages as root, a .venv with the
# project), so both work on a fresh Debian 12 machine and in CI.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
HPCRUN := $(VENV)/bin/hpcrun
APT_PACKAGES := slurm-wlm slurmctld slurmd slurm-client munge slurmdbd mariadb-server \
	chromium chromium-driver openssh-server openssh-client nodejs
# A program from each package group, to skip apt when everything is already there.
# (nodejs: `pcluster create-cluster` synthesises its CloudFormation template with CDK/jsii.)
APT_PROBES := slurmctld slurmd munged slurmdbd mariadbd sbatch chromium chromedriver sshd \
	ssh node
# Blender + ffmpeg for `hpcrun render`, without recommends (~650 MB instead of GBs).
APT_LEAN_PACKAGES := blender ffmpeg
APT_LEAN_PROBES := blender ffmpeg ffprobe

.PHONY: setup setup-system setup-venv demo demo-render demo-score test lint unit bench cluster-up cluster-down clean

setup: setup-system setup-venv ## install Slurm, munge, MariaDB (apt) and the project (.venv)

setup-system:
	@missing=0; for p in $(APT_PROBES); do command -v $$p >/dev/null || PATH=$$PATH:/usr/sbin command -v $$p >/dev/null || missing=1; done; \
	if [ $$missing = 1 ]; then \
	  echo "installing system packages: $(APT_PACKAGES)"; \
	  if [ "$$(id -u)" != 0 ]; then echo "error: run as root (apt-get install $(APT_PACKAGES))" >&2; exit 1; fi; \
	  apt-get update -qq -o DPkg::Lock::Timeout=300 && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 $(APT_PACKAGES) >/dev/null; \
	fi
	@missing=0; for p in $(APT_LEAN_PROBES); do command -v $$p >/dev/null || missing=1; done; \
	if [ $$missing = 1 ]; then \
	  echo "installing system packages: $(APT_LEAN_PACKAGES) (no recommends)"; \
	  if [ "$$(id -u)" != 0 ]; then echo "error: run as root (apt-get install $(APT_LEAN_PACKAGES))" >&2; exit 1; fi; \
	  apt-get update -qq -o DPkg::Lock::Timeout=300 && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    -o DPkg::Lock::Timeout=300 $(APT_LEAN_PACKAGES) >/dev/null; \
	fi

setup-venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml hpcrun/viewer/kernel.py
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[dev]'
	@# Compile the open renderer's numba kernels once (cached), not in every render agent.
	$(VENV)/bin/python -c "from hpcrun.viewer import kernel; kernel.warm()"
	@touch $@

demo: setup ## start a 4-node local cluster and render the supernova on all 4 nodes
	PATH=$$PATH:/usr/sbin $(HPCRUN) create
	@# Running the demo again restarts its IndeX session rather than failing on port 8080.
	@$(HPCRUN) index stop >/dev/null 2>&1 || true
	PATH=$$PATH:/usr/sbin $(HPCRUN) index --nodes 4 --scene supernova

demo-render: setup ## render the seed farm's rolling ball (48 frames) on the local cluster
	PATH=$$PATH:/usr/sbin $(HPCRUN) create
	@mkdir -p build
	blender -b --factory-startup --python-exit-code 1 \
	  --python scripts/blender/make_rolling_ball.py -- build/rolling_ball.blend >/dev/null
	PATH=$$PATH:/usr/sbin $(HPCRUN) render build/rolling_ball.blend --frames 1-48 \
	  --samples 16 --resolution 640x360 --output build/rolling_ball-frames

demo-score: setup ## score a 1M-row table with an XGBoost model: 4 shards, Triton on each node
	PATH=$$PATH:/usr/sbin $(HPCRUN) create
	@mkdir -p build
	$(VENV)/bin/python scripts/score/make_example.py build/score-example
	PATH=$$PATH:/usr/sbin $(HPCRUN) score -m build/score-example/model.json \
	  -i build/score-example/table.parquet -o build/score-example/scores.parquet \
	  --tasks 4 --overwrite

test: setup lint unit ## lint, type-check and run the whole suite (real Slurm)

lint: setup-venv
	$(VENV)/bin/ruff check hpcrun tests benchmarks
	$(VENV)/bin/mypy --strict hpcrun

unit: setup
	@PATH=$$PATH:/usr/sbin $(VENV)/bin/python -m pytest; rc=$$?; \
	if [ $$rc = 5 ]; then echo "error: pytest collected no tests" >&2; fi; exit $$rc

bench: setup ## every benchmark in benchmarks/, each prints its ratio last
	@for b in benchmarks/[a-z]*.py; do echo "== $$b"; PATH=$$PATH:/usr/sbin $(VENV)/bin/python $$b || exit 1; done

cluster-up: setup
	PATH=$$PATH:/usr/sbin $(HPCRUN) create

cluster-down: setup-venv
	$(HPCRUN) down --yes

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
