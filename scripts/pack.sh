#!/usr/bin/env bash
# Packs the three libraries (Spm.Core, Spm.Diffusion, Spm.Training: .nupkg + .snupkg) and the spm dotnet tool
# (Spm.Cli) into ./artifacts/packages. Usage: scripts/pack.sh [extra dotnet pack arguments, e.g. -p:Version=0.1.1]
set -euo pipefail
cd "$(dirname "$0")/.."
out="artifacts/packages"
mkdir -p "$out"
# Stale packages of the same version would shadow the new ones in a local feed (NuGet caches by id+version).
rm -f "$out"/Spm.*.nupkg "$out"/Spm.*.snupkg
for project in src/Spm.Core src/Spm.Diffusion src/Spm.Training src/Spm.Cli; do
  # ContinuousIntegrationBuild: deterministic, repository-relative source paths in the PDBs (SourceLink).
  dotnet pack "$project" -c Release -o "$out" -p:ContinuousIntegrationBuild=true "$@"
done
ls -1 "$out"
