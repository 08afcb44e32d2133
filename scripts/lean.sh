#!/usr/bin/env bash
# The lean builds, tried as a newcomer and a packager would: the simulator alone (`--features sim`, no broker, cloud
# or Kubernetes client) builds, simulates and checks configs; a config naming a source it was built without fails
# `check` with exit 2 and says which feature to build, while its settings are still checked and the simulator takes
# it; and a one-source build passes clippy. Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "lean builds: $*" >&2; exit 1; }

cargo clippy --locked --no-default-features --features sim -- -D warnings
cargo clippy --locked --no-default-features --features rabbitmq -- -D warnings
# Its own target directory, so that this binary never stands in for the default one the integration tests run.
cargo build --locked --quiet --no-default-features --features sim --bin queue-scaler --target-dir target/lean
bin=target/lean/debug/queue-scaler

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$bin" simulate --trace steady >"$tmp/simulated" || fail "simulate failed in the sim build"
grep -q '^queue-scaler ' "$tmp/simulated" || fail "simulate printed no queue-scaler row: $(cat "$tmp/simulated")"

"$bin" --help >"$tmp/help"
for command in simulate replay tune import check; do
    grep -qE "^  $command " "$tmp/help" || fail "the sim build's --help lacks \`$command\`"
done
for command in run scale status; do
    if grep -qE "^  $command " "$tmp/help"; then fail "the sim build offers \`$command\`, which needs the cluster client"; fi
done

cat >"$tmp/kafka.yaml" <<'YAML'
targets:
  - deployment: transcoding-worker
    maxReplicas: 20
    sources:
      - type: kafka
        brokers: kafka:9092
        topic: videos
        group: transcoders
        backlogPerWorker: 5
YAML
code=0
"$bin" check -c "$tmp/kafka.yaml" 2>"$tmp/refused" || code=$?
[ "$code" -eq 2 ] || fail "check of a kafka config in the sim build exited $code, not 2"
expected="$tmp/kafka.yaml:5: targets[0].sources[0].type: this queue-scaler was built without \`kafka\` sources; build it with \`--features kafka\`"
grep -qF "$expected" "$tmp/refused" || fail "check's message does not name the feature: $(cat "$tmp/refused")"

# The simulator stands in for every queue, so it takes the same config.
"$bin" simulate -c "$tmp/kafka.yaml" --trace steady >"$tmp/simulated" || fail "the sim build cannot simulate a kafka config"
grep -q '^queue-scaler ' "$tmp/simulated" || fail "simulate -c printed no queue-scaler row: $(cat "$tmp/simulated")"
# The settings of a source that is not built in are still checked.
sed -i 's/brokers: kafka:9092/brokers: ""/' "$tmp/kafka.yaml"
"$bin" check -c "$tmp/kafka.yaml" 2>"$tmp/refused" || true
grep -q "kafka.yaml:6: targets\[0\].sources\[0\].brokers" "$tmp/refused" || fail "check skipped the settings: $(cat "$tmp/refused")"
echo "lean builds: ok"
