#!/usr/bin/env bash
# Installs the official `openai` npm package (and Node.js from Debian when missing) into
# DIR/node_modules, for the test that drives `tandem serve` with a client no one here wrote.
# Usage: scripts/setup-openai-client.sh DIR     (the tests look in build/node)
set -euo pipefail
dir=${1:?usage: setup-openai-client.sh DIR}
if ! command -v npm >/dev/null; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [ -f "$dir/node_modules/openai/package.json" ]; then
  echo "setup-openai-client: openai $(node -p "require('$dir/node_modules/openai/package.json').version") present"
  exit 0
fi
npm install --silent --no-audit --no-fund --prefix "$dir" openai@^4
echo "setup-openai-client: installed openai $(node -p "require('$dir/node_modules/openai/package.json').version") in $dir"
