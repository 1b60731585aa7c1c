#!/usr/bin/env bash
# Packs the release built from a commit of this repository into test/fixtures/releases/, for the upgrade
# test (test/upgrade.test.ts), which runs it against the schema of the current tree.
# Usage: scripts/pack-release.sh <commit>
set -euo pipefail
commit=${1:?usage: scripts/pack-release.sh <commit>}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git -C "$root" archive "$commit" | tar -x -C "$work"
(cd "$work" && npm ci --no-audit --no-fund --ignore-scripts >/dev/null && npm run build >/dev/null &&
  npm pack --silent --pack-destination "$root/test/fixtures/releases")
