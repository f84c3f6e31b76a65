#!/usr/bin/env bash
# Peak memory of loading an SD-1.5-sized fp16 UNet on CPU (docs/exports.md). Needs ~6 GB of disk and ~7 GB of RAM.
# Usage: scripts/measure/fp16-unet-memory.sh [WORK_DIR]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="${1:-$(mktemp -d)}"
cd "$root"
dotnet build src/Spm.Cli -c Release -v q >/dev/null
# 1. The SD 1.5 UNet at full size (random weights), fp32, weights in unet/weights.pb.
dotnet src/Spm.Cli/bin/Release/net10.0/spm.dll build-model --preset sd15 --unet-only --external-data --out "$work/sd15" --force
# 2. fp16 copy: unet/model.onnx + model.onnx_data.
cd "$here"
dotnet run fp16-convert.cs -- "$work/sd15/unet" "$work/sd15-fp16/unet"
# 3. Open it as the pipeline does, in a fresh process per optimisation level, and run one 64x64 call.
for level in ORT_ENABLE_ALL ORT_ENABLE_BASIC ORT_DISABLE_ALL; do
  dotnet run fp16-load.cs -- "$work/sd15-fp16/unet/model.onnx" "$level" run
done
