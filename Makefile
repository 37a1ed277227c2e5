# The two commands of the README: `make demo` and `make test`. Each installs what it needs.
SHELL := /bin/bash
ENV := source scripts/env.sh &&

.PHONY: setup build demo test bench fuzz fmt
setup:
	bash scripts/setup.sh

build: setup
	$(ENV) cargo build --bin tessera

demo: build
	$(ENV) bash scripts/demo.sh

test: setup
	$(ENV) cargo build --workspace --bins --benches --examples
	$(ENV) cargo test --workspace --lib --bins --tests -- --test-threads=2
	$(ENV) cargo test --workspace --doc

bench: setup
	$(ENV) cargo bench --profile dev --bench compare
	$(ENV) cargo bench --profile dev --bench pull
	$(ENV) cargo bench --profile dev --bench push
	$(ENV) cargo bench --profile dev --bench foundation
	$(ENV) cargo bench --profile dev -p tessera-xet --bench xet
	$(ENV) cargo bench --profile dev --bench mount_scale
	$(ENV) cargo bench --profile dev --bench mount_cap

fuzz: setup
	$(ENV) bash scripts/fuzz.sh

fmt:
	cargo fmt
