#!/usr/bin/env bash
# Installs the spm dotnet tool from the local feed made by scripts/pack.sh.
#   scripts/install-tool.sh                       global install (~/.dotnet/tools; put it on PATH)
#   scripts/install-tool.sh --tool-path DIR       install into DIR (no PATH change needed: run DIR/spm)
#   scripts/install-tool.sh --gpu [--tool-path DIR]  the CUDA build, Spm.Cli.Gpu (made by scripts/pack.sh --gpu)
# An earlier install of the tool (either build) is replaced.
set -euo pipefail
cd "$(dirname "$0")/.."
feed="$(pwd)/artifacts/packages"
id=Spm.Cli
if [ "${1:-}" = "--gpu" ]; then id=Spm.Cli.Gpu; shift; fi
# The newest packed version (file names are <id>.<version>.nupkg; a version starts with a digit, so Spm.Cli.Gpu.*
# files are not taken for Spm.Cli ones).
version=$(ls "$feed" 2>/dev/null | sed -nE "s/^${id//./\\.}\.([0-9][^/]*)\.nupkg$/\1/p" | sort -V | tail -1)
if [ -z "$version" ]; then
  echo "no $id package in $feed: run scripts/pack.sh$([ "$id" = Spm.Cli.Gpu ] && echo ' --gpu') first" >&2
  exit 1
fi
if [ "${1:-}" = "--tool-path" ]; then
  [ -n "${2:-}" ] || { echo "usage: $0 [--gpu] [--tool-path DIR]" >&2; exit 2; }
  where=(--tool-path "$2")
else
  where=(--global)
fi
dotnet tool uninstall "${where[@]}" Spm.Cli >/dev/null 2>&1 || true
dotnet tool uninstall "${where[@]}" Spm.Cli.Gpu >/dev/null 2>&1 || true
# --add-source adds the local folder to the configured feeds (nuget.org stays available for the dependencies).
dotnet tool install "${where[@]}" "$id" --version "$version" --add-source "$feed"
if [ "${where[0]}" = "--global" ]; then
  echo "installed spm $version ($id); if 'spm' is not found, add \$HOME/.dotnet/tools to PATH"
else
  echo "installed spm $version ($id) in $2"
fi
