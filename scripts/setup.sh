#!/usr/bin/env bash
# Prepare a Debian machine (as root) for Mulligan's Docker sandbox: install the Docker
# engine when missing, start dockerd when it is not answering, and build the offline
# base image when missing. Idempotent: a second run checks and returns in seconds.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
DOCKERD_LOG="${MULLIGAN_DOCKERD_LOG:-/var/log/mulligan-dockerd.log}"
log() { printf '[mulligan-setup] %s\n' "$*" >&2; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

if ! command -v dockerd >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { log "Docker is not installed; run this script as root to install it"; exit 1; }
  log "installing docker.io"
  apt_install docker.io
fi
command -v debootstrap >/dev/null 2>&1 || { [ "$(id -u)" = 0 ] && apt_install debootstrap; } || true

if ! docker info >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { log "the Docker daemon is not answering; start it (e.g. sudo systemctl start docker)"; exit 1; }
  log "starting dockerd (log: $DOCKERD_LOG)"
  nohup dockerd >"$DOCKERD_LOG" 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { log "dockerd did not answer within 60 s; see $DOCKERD_LOG"; tail -n 20 "$DOCKERD_LOG" >&2; exit 1; }
fi
log "docker engine answering"

bash "$HERE/sandbox/images/build-offline-image.sh"
