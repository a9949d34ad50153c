#!/usr/bin/env bash
# Set up Mulligan and run its main job on the bundled example repository (examples/calc,
# copied into a fresh git repository under /tmp, so this checkout is never touched).
# With a model endpoint configured (OPENAI_BASE_URL, OPENAI_API_KEY, MULLIGAN_MODEL) it runs
# `mulligan fix` and prints the patch it found; without one it shows the failing baseline
# in the sandbox and says how to point Mulligan at a model.
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

if [ -n "${OPENAI_BASE_URL:-}" ] || [ -n "${OPENAI_API_KEY:-}" ]; then
  exec mulligan fix "$DEMO" --candidates "${CANDIDATES:-4}" --rounds "${ROUNDS:-2}"
fi
mulligan doctor "$DEMO" || true
mulligan sandbox run "$DEMO" || true
cat >&2 <<'MSG'

No model endpoint is configured, so Mulligan stopped after testing the example in the sandbox
(the failing tests above are what it would fix). Point it at any OpenAI-compatible server:
  OPENAI_BASE_URL=http://127.0.0.1:11434/v1 MULLIGAN_MODEL=qwen2.5-coder:7b bash scripts/demo.sh   # Ollama
  OPENAI_BASE_URL=http://127.0.0.1:8000/v1 MULLIGAN_MODEL=<served name> bash scripts/demo.sh        # vLLM
  OPENAI_API_KEY=sk-... MULLIGAN_MODEL=gpt-4o-mini bash scripts/demo.sh                             # OpenAI
MSG
