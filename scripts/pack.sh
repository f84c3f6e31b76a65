#!/usr/bin/env bash
# Packs the three libraries (Spm.Core, Spm.Diffusion, Spm.Training: .nupkg + .snupkg) and the spm dotnet tool
# (Spm.Cli, CPU ONNX Runtime, with the built-in model) into ./artifacts/packages.
#   scripts/pack.sh [--gpu] [extra dotnet pack arguments, e.g. -p:Version=0.1.1]
#   --gpu  also packs Spm.Cli.Gpu, the tool on the CUDA build of ONNX Runtime (about 400 MB; see src/Spm.Cli/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."
gpu=false
if [ "${1:-}" = "--gpu" ]; then gpu=true; shift; fi
out="artifacts/packages"
mkdir -p "$out"
# Stale packages of the same version would shadow the new ones in a local feed (NuGet caches by id+version).
rm -f "$out"/Spm.*.nupkg "$out"/Spm.*.snupkg
for project in src/Spm.Core src/Spm.Diffusion src/Spm.Training src/Spm.Cli; do
  # ContinuousIntegrationBuild: deterministic, repository-relative source paths in the PDBs (SourceLink).
  dotnet pack "$project" -c Release -o "$out" -p:ContinuousIntegrationBuild=true "$@"
done
if [ "$gpu" = true ]; then
  # Its own output folder: the CPU and GPU tools publish different ONNX Runtime libraries under the same names.
  dotnet pack src/Spm.Cli -c Release -o "$out" -p:ContinuousIntegrationBuild=true -p:SpmGpu=true \
    -p:OutputPath=bin/gpu/ "$@"
fi
ls -1 "$out"
