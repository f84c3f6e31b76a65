#!/usr/bin/env bash
# Installs the spm dotnet tool from the local feed made by scripts/pack.sh.
#   scripts/install-tool.sh                 global install (~/.dotnet/tools; put it on PATH)
#   scripts/install-tool.sh --tool-path DIR install into DIR (no PATH change needed: run DIR/spm)
# An earlier install of the tool is replaced.
set -euo pipefail
cd "$(dirname "$0")/.."
feed="$(pwd)/artifacts/packages"
if ! ls "$feed"/Spm.Cli.*.nupkg >/dev/null 2>&1; then
  echo "no Spm.Cli package in $feed: run scripts/pack.sh first" >&2
  exit 1
fi
# The newest packed version (file names are Spm.Cli.<version>.nupkg).
version=$(ls "$feed"/Spm.Cli.*.nupkg | sed -E 's|.*/Spm\.Cli\.(.*)\.nupkg|\1|' | sort -V | tail -1)
if [ "${1:-}" = "--tool-path" ]; then
  [ -n "${2:-}" ] || { echo "usage: $0 [--tool-path DIR]" >&2; exit 2; }
  where=(--tool-path "$2")
else
  where=(--global)
fi
dotnet tool uninstall "${where[@]}" Spm.Cli >/dev/null 2>&1 || true
# --add-source adds the local folder to the configured feeds (nuget.org stays available for the dependencies).
dotnet tool install "${where[@]}" Spm.Cli --version "$version" --add-source "$feed"
if [ "${where[0]}" = "--global" ]; then
  echo "installed spm $version; if 'spm' is not found, add \$HOME/.dotnet/tools to PATH"
else
  echo "installed spm $version in $2"
fi
