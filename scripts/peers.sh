# Sourced by scripts/test.sh: install and start the real peers the tests talk to, each bound to 127.0.0.1.
# Every function is idempotent: a peer that already answers is left alone. Readiness is polled with a deadline.

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $*" >&2; return 1; fi
}

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# wait_for_port PORT SECONDS WHAT
wait_for_port() {
  local deadline=$((SECONDS + $2))
  until (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "$3 did not open port $1 within $2 s" >&2; return 1; fi
    sleep 0.2
  done
}

# wait_for_http URL SECONDS WHAT
wait_for_http() {
  local deadline=$((SECONDS + $2))
  until curl -fsS -o /dev/null "$1" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "$3 did not answer $1 within $2 s" >&2; return 1; fi
    sleep 0.3
  done
}

ensure_rabbitmq() {
  if ! (echo >/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
    command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
    # Start one node only; `await_startup` can return before the listener is up, so poll the port instead.
    pgrep -f beam.*rabbit >/dev/null || as_root rabbitmq-server -detached
    wait_for_port 5672 90 RabbitMQ
  fi
  if ! curl -fsS -o /dev/null -u guest:guest http://127.0.0.1:15672/api/overview 2>/dev/null; then
    as_root rabbitmq-plugins enable --quiet rabbitmq_management >/dev/null
    wait_for_http http://guest:guest@127.0.0.1:15672/api/overview 60 "RabbitMQ management"
  fi
}

ensure_promtool() {
  command -v promtool >/dev/null || apt_install prometheus
}

# moto's AWS server, for the SQS source and the SQS drain tests: 127.0.0.1:4566, any SigV4-signed dummy credentials.
ensure_moto() {
  curl -fsS -o /dev/null http://127.0.0.1:4566/moto-api/ 2>/dev/null && return 0
  command -v moto_server >/dev/null || python3 -m pip install --quiet "moto[server]"
  # One server only: a second start while the first is still coming up would just fail to bind.
  if ! pgrep -f "moto_server -H 127.0.0.1 -p 4566" >/dev/null; then
    nohup moto_server -H 127.0.0.1 -p 4566 >/tmp/moto-4566.log 2>&1 &
  fi
  wait_for_http http://127.0.0.1:4566/moto-api/ 30 moto
}

# Prometheus, for the prometheus source: installed only, since each test starts its own server with a config that
# scrapes an exporter on the port that test picked.
ensure_prometheus() {
  command -v prometheus >/dev/null || apt_install prometheus
}

# The Pub/Sub emulator (preinstalled with the Google Cloud SDK; Debian's `google-cloud-cli-pubsub-emulator` otherwise).
# It is Java and takes a couple of seconds; clients find it through PUBSUB_EMULATOR_HOST=127.0.0.1:8085.
ensure_pubsub_emulator() {
  local launcher=/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator
  if (echo >/dev/tcp/127.0.0.1/8085) 2>/dev/null; then return 0; fi
  [ -x "$launcher" ] || apt_install google-cloud-cli-pubsub-emulator
  command -v java >/dev/null || apt_install default-jre-headless
  pgrep -f "cloud-pubsub-emulator.*--port=8085" >/dev/null ||
    nohup "$launcher" --host=127.0.0.1 --port=8085 >/tmp/pubsub-emulator.log 2>&1 </dev/null &
  wait_for_http http://127.0.0.1:8085/ 60 "the Pub/Sub emulator"
}

# The chart's checks (scripts/chart_check.py) need Helm's library through helm-sdkpy, which wants Python 3.12 or
# later, and kubernetes-validate. They live in a virtualenv of their own, reinstalled only when the requirements
# change; tests/integration/helm_chart reads its Python from QS_TEST_CHART_PYTHON.
chart_tools_venv="${QS_CHART_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/queue-scaler/chart-venv}"
chart_tools_requirements="scripts/chart_check.requirements.txt"

# Prints a Python of version 3.12 or later: 3.12 first (what the checks were written with), then anything newer.
find_python_3_12() {
  local pyenv_root candidate
  pyenv_root="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
  for candidate in \
    "$(command -v python3.12)" $(ls -d "$pyenv_root"/versions/3.12.*/bin/python 2>/dev/null | sort -V -r) \
    "$(command -v python3.13)" $(ls -d "$pyenv_root"/versions/3.1[3-9]*/bin/python 2>/dev/null | sort -V -r) \
    "$(command -v python3)"; do
    if [ -n "$candidate" ] && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "no Python 3.12 or later found, which helm-sdkpy needs (pyenv install 3.12, for one)" >&2
  return 1
}

ensure_chart_tools() {
  local python="$chart_tools_venv/bin/python" base
  if ! cmp -s "$chart_tools_requirements" "$chart_tools_venv/requirements.txt" \
    || ! "$python" -c 'import helm_sdkpy, kubernetes_validate, yaml' 2>/dev/null; then
    base="$(find_python_3_12)" || return 1
    "$base" -m venv --clear "$chart_tools_venv"
    "$python" -m pip install --quiet --disable-pip-version-check -r "$chart_tools_requirements"
    cp "$chart_tools_requirements" "$chart_tools_venv/requirements.txt"
  fi
  export QS_TEST_CHART_PYTHON="$python"
}
