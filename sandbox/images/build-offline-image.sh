#!/usr/bin/env bash
# Build Mulligan's offline sandbox base image from Debian packages, for machines that
# cannot pull from a container registry: debootstrap a minimal Debian with python3,
# pip, venv, pytest and git, add an unprivileged user, and `docker import` it.
# Idempotent: exits at once when the image is already present (pass --force to rebuild).
set -euo pipefail

TAG="${MULLIGAN_OFFLINE_IMAGE:-mulligan/base:bookworm}"
SUITE="${MULLIGAN_DEBIAN_SUITE:-bookworm}"
MIRROR="${MULLIGAN_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

log() { printf '[mulligan-image] %s\n' "$*" >&2; }

if [ "$FORCE" = 0 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
  log "image $TAG already present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  log "building the base image needs root (debootstrap); run: sudo $0"
  exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
fi

ROOT="$(mktemp -d /tmp/mulligan-rootfs.XXXXXX)"
cleanup() { rm -rf --one-file-system "$ROOT"; }
trap cleanup EXIT

log "debootstrap $SUITE into $ROOT (about a minute)"
debootstrap --variant=minbase \
  --include=python3,python-is-python3,python3-pip,python3-venv,python3-pytest,git,ca-certificates,patch \
  "$SUITE" "$ROOT" "$MIRROR" >"$ROOT.log" 2>&1 || { tail -n 20 "$ROOT.log" >&2; rm -f "$ROOT.log"; exit 1; }
rm -f "$ROOT.log"

# The unprivileged user every candidate runs as (uid 1000); no password, no shell login.
echo 'mulligan:x:1000:1000:mulligan sandbox:/home/mulligan:/bin/sh' >>"$ROOT/etc/passwd"
echo 'mulligan:x:1000:' >>"$ROOT/etc/group"
mkdir -p "$ROOT/home/mulligan" "$ROOT/workspace"
chown 1000:1000 "$ROOT/home/mulligan" "$ROOT/workspace"
# pip refuses system installs on Debian (PEP 668) unless told; the dependency layer needs it.
printf '[global]\nbreak-system-packages = true\n' >"$ROOT/etc/pip.conf"
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/*

log "importing as $TAG"
tar -C "$ROOT" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'WORKDIR /workspace' \
  --change 'CMD ["python3"]' \
  - "$TAG" >/dev/null
log "built $TAG"
