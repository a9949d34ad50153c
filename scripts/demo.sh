#!/usr/bin/env bash
# Set up Mulligan and run its main job on the bundled example repository (examples/calc,
# copied into a fresh git repository under /tmp, so this checkout is never touched), printing
# the patch it found.
# With a model endpoint configured (OPENAI_BASE_URL, OPENAI_API_KEY, MULLIGAN_MODEL) it uses
# that model. Without one it sets up the bundled offline model first (`mulligan model setup`:
# builds llama.cpp's llama-server and fetches + verifies Qwen2.5-Coder-1.5B; about 20-35 min
# and 1.1 GB the first time on 2 cores, about a second afterwards) and uses it.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
bash "$HERE/scripts/setup.sh"
python3 -m pip install -q --disable-pip-version-check -e "$HERE"

DEMO="$(mktemp -d /tmp/mulligan-demo.XXXXXX)"
cp -r "$HERE/examples/calc/." "$DEMO/"
git -C "$DEMO" init -q
git -C "$DEMO" add -A
git -C "$DEMO" -c user.name=demo -c user.email=demo@localhost commit -qm "calc with a bug"
echo "demo repository: $DEMO" >&2

if [ -z "${OPENAI_BASE_URL:-}" ] && [ -z "${OPENAI_API_KEY:-}" ]; then
  mulligan model setup
fi
exec mulligan fix "$DEMO" --candidates "${CANDIDATES:-4}" --rounds "${ROUNDS:-3}"
