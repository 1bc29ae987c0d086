#!/usr/bin/env bash
# The one test command (README): installs what the tests need, then runs every check and test.
# Safe to run repeatedly; CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests need. None yet: Kafka interop tests (kcat, Python clients in a venv)
# arrive with the broker and add their installs here.
command -v cargo-nextest >/dev/null 2>&1 || cargo install --locked cargo-nextest

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "==> doctests"
cargo test --workspace --doc --quiet
# nextest last: its summary line closes the run.
echo "==> tests"
cargo nextest run --workspace --no-fail-fast "$@"
