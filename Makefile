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

.PHONY: setup setup-system setup-venv demo demo-render demo-score test suite lint unit bench cluster-up cluster-down k8s-binaries k8s-up k8s-down open-renderer-image render-worker-image clean

setup: setup-system setup-venv k8s-binaries ## install Slurm, munge, MariaDB (apt), the project (.venv) and the test Kubernetes control plane (Go, cached)

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

$(VENV)/.installed: pyproject.toml hpcrun/node/viewer/kernel.py
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[dev]'
	@# Compile the open renderer's numba kernels once (cached), not in every render agent.
	$(VENV)/bin/python -c "from hpcrun.node.viewer import kernel; kernel.warm()"
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

test: setup lint suite ## lint, type-check and run the whole suite (real Slurm)

lint: setup-venv
	$(VENV)/bin/ruff check hpcrun tests benchmarks
	$(VENV)/bin/mypy --strict hpcrun

# Two workers: the Slurm tests on one, the Kubernetes ones on the other, the rest spread
# (tests/conftest.py: SERIAL_GROUPS); most of the suite waits on daemons, not on CPUs.
PYTEST_WORKERS ?= 2

suite: setup ## every test: the real local Slurm cluster, moto, sshd, Chromium, Blender
	@$(call run_pytest,-n $(PYTEST_WORKERS) --dist loadgroup)

# What needs no real component (Slurm daemons, sshd, moto, Chromium, Blender) and is not
# marked slow: what a developer runs after each change.
unit: setup-venv ## the fast tests only, in-process or tiny child processes
	@$(call run_pytest,--ignore=tests/e2e -m "$(UNIT_MARKERS)")

UNIT_MARKERS := not slurm and not ssh and not aws and not browser and not blender and not slow

# pytest with the user's own hpcrun and Slurm settings replaced by unrelated values: a test
# that let one reach a child process would act on the user's clusters; here it fails, and
# a HPCRUN_HOME that appears afterwards means some test wrote there. Exit 5 (nothing
# collected) fails too.
define run_pytest
home=$$(mktemp -u -d /tmp/hpcrun-not-yours-XXXXXX); \
PATH=$$PATH:/usr/sbin HPCRUN_HOME=$$home HPCRUN_CLUSTER=not-a-cluster \
  SLURM_CONF=/nonexistent/slurm.conf $(VENV)/bin/python -m pytest $(1); rc=$$?; \
if [ $$rc = 5 ]; then echo "error: pytest collected no tests" >&2; fi; \
if [ -e $$home ]; then \
  echo "error: a test wrote to the user's HPCRUN_HOME ($$home)" >&2; rm -rf $$home; rc=1; \
fi; \
exit $$rc
endef

bench: setup ## every benchmark in benchmarks/, each prints its ratio last
	@for b in benchmarks/[a-z]*.py; do echo "== $$b"; PATH=$$PATH:/usr/sbin $(VENV)/bin/python $$b || exit 1; done

cluster-up: setup
	PATH=$$PATH:/usr/sbin $(HPCRUN) create

cluster-down: setup-venv
	$(HPCRUN) down --yes

k8s-binaries: ## build the Kubernetes control plane + kwok + helm from Go modules (cached in ~/.cache/hpcrun)
	PATH=$$PATH:/usr/local/go/bin scripts/k8s/build.sh

k8s-up: k8s-binaries ## start a kwok cluster (real apiserver/scheduler/etcd, 4 fake GPU nodes); prints its kubeconfig and an hpcrun cluster file
	scripts/k8s/up.sh

k8s-down: ## delete the kwok cluster and its processes
	scripts/k8s/down.sh

OPEN_RENDERER_IMAGE ?= hpcrun/open-renderer:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
open-renderer-image: ## build the open renderer's container image (needs docker or podman; nothing else does)
	@engine=$$(command -v docker || command -v podman) || { echo "error: no container engine (docker or podman) here; build the image where one runs" >&2; exit 1; }; \
	$$engine build -f scripts/docker/open-renderer.Dockerfile -t $(OPEN_RENDERER_IMAGE) .

RENDER_WORKER_IMAGE ?= hpcrun/render-worker:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
render-worker-image: ## build the render farm's worker image (needs docker or podman; nothing else does)
	@engine=$$(command -v docker || command -v podman) || { echo "error: no container engine (docker or podman) here; build the image where one runs" >&2; exit 1; }; \
	$$engine build -f scripts/docker/render-worker.Dockerfile -t $(RENDER_WORKER_IMAGE) .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
