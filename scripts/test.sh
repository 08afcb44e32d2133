#!/usr/bin/env bash
# The one test command, for a developer and for CI alike: installs and starts what the tests need (RabbitMQ with its
# management plugin, promtool, moto, Prometheus, the Pub/Sub emulator, Helm's library for the chart's checks),
# checks formatting and lints, then runs every test.
# Extra arguments go to `cargo nextest run` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/peers.sh

echo "== peers"
ensure_rabbitmq
ensure_pubsub_emulator
ensure_promtool
ensure_moto
ensure_prometheus
ensure_chart_tools

echo "== lint"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# The worker-side drain library alone: what a worker built with `default-features = false, features = ["drain"]` gets.
cargo clippy --no-default-features --features drain --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked --quiet
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked --quiet --no-default-features --features drain

echo "== lean builds"
bash scripts/lean.sh

echo "== tests"
# The drain kill tests run the example workers as processes; nextest builds tests, not examples.
cargo build --examples --locked
# `--tests` runs the library, binary and integration tests; the benches start peers and time things, so they are
# compiled by clippy above but run only by `cargo bench`.
cargo nextest run --tests --locked --profile ci "$@"
cargo test --doc --locked --quiet
