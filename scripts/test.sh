#!/usr/bin/env bash
# The one test command (README): installs what the tests need, then runs every check and test.
# Safe to run repeatedly; CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests need: cargo-nextest, Debian's kcat (librdkafka 2.0.2) and a venv with
# confluent-kafka and kafka-python for the interop tests (idempotent; under a second when present).
command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest
echo "==> test dependencies (kcat, Python Kafka clients)"
DMQ_VENV="$(./scripts/install-test-deps.sh)"
export DMQ_VENV

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "==> doctests"
cargo test --workspace --doc --quiet
# nextest last: its summary line closes the run.
echo "==> tests"
cargo nextest run --workspace --no-fail-fast "$@"
