# The two commands README.md opens with: `make run` and `make test`.
SHELL := /bin/bash
.PHONY: deps certs run test lint bench

deps:
	@.ci/install-deps

certs: deps
	@certs/make-dev-certs.sh

# The gateway on config/ with the dev certificate, in-memory sessions, two echo upstreams and
# the local OpenID provider with demo users (see config/run-dev.sh).
run: certs
	cargo build --release -p authgate
	config/run-dev.sh

# Formatting, lints, every unit and integration test, the deploy kit's validators
# (.ci/validate-deploy: Kubernetes schemas, promtool, compose-spec, hadolint, systemd, ...), and
# a type check of the fuzz targets (their own workspace, run by hand with nightly: fuzz/README.md)
# so that they keep compiling as the code they call changes.
test: deps
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo test --workspace --locked
	.ci/validate-deploy
	cargo check --manifest-path fuzz/Cargo.toml --bins --locked

bench: certs
	cargo bench -p authgate
	loadtest/bench.sh
