#!/usr/bin/env bash
# Everything the README's quick start needs on a fresh Debian 12 machine (as root): the host
# packages (install/setup-host.sh), the npm dependencies (Bun included), the compiled dist/agent,
# and a Caddy with its admin API on 127.0.0.1:2019 serving plain HTTP on :80 for the example's
# proxy route. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '[dev-setup] %s\n' "$*" >&2; }

bash install/setup-host.sh
if [ ! -x node_modules/.bin/bun ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm dependencies"
  npm ci --no-audit --no-fund --loglevel=error
fi
node_modules/.bin/bun install/build.ts
if ! curl -fsS -o /dev/null http://127.0.0.1:2019/config/ 2>/dev/null; then
  say "starting caddy (admin 127.0.0.1:2019, HTTP :80) for proxy routes"
  caddy start --config install/caddy-dev.json >/dev/null 2>&1
fi
say "ready: dist/agent $(dist/agent --version)"
