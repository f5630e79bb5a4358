# Every target does its own set-up (scripts/setup.sh is idempotent).
export RUNTIME_CACHE_DIR ?= $(CURDIR)/.cache
PY := .venv/bin/python

.PHONY: setup run test lint unit offline chaos bench bench-agents bench-gateway bench-user-path bench-autoscaling bench-tools system-packages format clean

setup:
	@bash scripts/setup.sh

## The local stack on the embedded default config (Ctrl-C stops it).
run: setup
	$(PY) -m runtime run serve_configs/local.yaml

## Lint, type checks, then the whole test suite (installs PostgreSQL if missing).
test: setup lint system-packages
	$(PY) -m pytest

system-packages:
	@bash scripts/system-packages.sh

lint: setup
	$(PY) -m ruff check runtime tests benchmarks scripts
	$(PY) -m ruff format --check runtime tests benchmarks scripts
	$(PY) -m mypy

## The fast tier only: no Ray, no engine (tests/unit).
unit: setup
	$(PY) -m pytest tests/unit

## Tools over the repository's files: kustomize, kubernetes-validate, checkov, hadolint,
## promtool (tests/offline; Prometheus' promtool is a system package).
offline: setup system-packages
	$(PY) -m pytest tests/offline

## The chaos suite's full form (tests/cluster/test_chaos.py; its short form runs in
## `make test`): results in benchmarks/results/chaos.{json,md,png}.
chaos: setup system-packages
	RUNTIME_CHAOS_FULL=1 $(PY) -m pytest tests/cluster/test_chaos.py

bench: setup
	$(PY) benchmarks/llm_latency.py

bench-agents: setup
	$(PY) benchmarks/agent_overhead.py

bench-gateway: setup system-packages
	$(PY) benchmarks/gateway_latency.py

## The user's path (client -> proxy -> gateway -> model) against bare vLLM at 1, 8, 32
## and 64 streams, SmolLM2 and the tiny model: benchmarks/results/user_path_*.
bench-user-path: setup
	$(PY) benchmarks/user_path.py --model smollm2
	$(PY) benchmarks/user_path.py --model tiny-random

bench-autoscaling: setup
	$(PY) benchmarks/autoscaling_reaction.py
	$(PY) benchmarks/autoscaling_reaction.py --deployment llm --step-s 150

## Tool-calling accuracy on BFCL (benchmarks/tool_calling.py), SmolLM2 and the tiny
## model. bfcl-eval ships the data; its dependencies (numpy 1.26, provider SDKs) would
## break vLLM's, and only the data are read: installed without them.
bench-tools: setup
	$(PY) -m pip install -q --no-deps bfcl-eval==2026.3.23
	$(PY) benchmarks/tool_calling.py --model smollm2
	$(PY) benchmarks/tool_calling.py --model tiny-random

format: setup
	$(PY) -m ruff format runtime tests benchmarks
	$(PY) -m ruff check --fix runtime tests benchmarks

clean:
	rm -rf .venv .cache .mypy_cache .ruff_cache .pytest_cache
