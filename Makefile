# The two commands README.md opens with: `make run` and `make test`.
SHELL := /bin/bash
.PHONY: deps certs run test lint bench

deps:
	@.ci/install-deps

certs: deps
	@certs/make-dev-certs.sh

# The gateway on config/ with the dev certificate and two echo upstreams (127.0.0.1:9001, :9002).
run: certs
	cargo build --release -p authgate
	@trap 'kill 0' EXIT; \
	target/release/authgate echo -l 127.0.0.1:9001 -l 127.0.0.1:9002 & \
	target/release/authgate run -c config/gateway.yaml

# Formatting, lints, and every unit and integration test.
test: deps
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo test --workspace --locked

bench: certs
	cargo bench -p authgate
	loadtest/bench.sh
