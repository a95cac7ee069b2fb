# Developer and CI entry points of m365-sync. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# Build output lives outside the clone, shared between clones and CI runs.
CARGO_TARGET_DIR ?= $(HOME)/.cache/m365-sync/target
export CARGO_TARGET_DIR
# The machines have 2 cores.
CARGO_BUILD_JOBS ?= 2
export CARGO_BUILD_JOBS

VENV := .venv
export VENV := $(abspath $(VENV))
# SAM CLI: no telemetry, and validation needs only a region, never an account.
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: help setup validate test test-rust test-emulator-python test-demo lint build demo local

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

setup: ## install the pinned Python tools (moto, cfn-lint, SAM CLI) into .venv/ when the pins changed
	@scripts/setup-venv.sh

validate: setup ## check template.yaml with cfn-lint, sam validate and sam validate --lint (offline)
	$(VENV)/bin/cfn-lint template.yaml
	$(VENV)/bin/sam validate --template-file template.yaml --region $(AWS_DEFAULT_REGION)
	$(VENV)/bin/sam validate --lint --template-file template.yaml --region $(AWS_DEFAULT_REGION)

test: setup validate test-rust test-emulator-python test-demo ## everything CI runs: template checks, Rust tests on moto + emulator, the msgraph-sdk suite, the demo

test-rust: setup ## unit, contract and integration tests with a private moto server on a free loopback port
	scripts/with-moto.sh cargo test --workspace --all-targets --no-fail-fast

test-emulator-python: ## Microsoft's Python Graph SDK against the m365-emulator (own venv)
	tools/m365-emulator/python/run.sh

test-demo: setup ## the `make demo` walkthrough, non-interactively, failing on the first broken step
	cargo build --workspace --bins
	scripts/with-moto.sh python3 scripts/demo.py --quiet-logs

demo: setup ## the product end to end on this machine: moto + m365-emulator + devstack, walked through
	cargo build --workspace --bins
	scripts/with-moto.sh python3 scripts/demo.py

local: setup ## the same stack left running: prints the API URL, its token and example curl commands
	cargo build --workspace --bins
	scripts/with-moto.sh python3 scripts/demo.py --local

lint: ## formatting and clippy with warnings as errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

build: ## release build of every crate
	cargo build --workspace --release
