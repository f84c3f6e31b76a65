#!/usr/bin/env bash
# SIGKILL trials against `spm bake` and `spm train` (tests/Spm.Cli.Tests/KillTests.cs): half the trials kill a bake
# replacing an older baked folder, half kill a training that checkpoints every iteration over an older output.
# After every kill the outputs must be the old ones or complete new ones. From 10 trials on, every fifth killed
# training is resumed and must end byte-identical to an uninterrupted run.
#   scripts/kill-test.sh [TRIALS=50] [SEED=8]      (SPM_KILL_LOG=FILE also appends a line per trial to FILE)
set -euo pipefail
cd "$(dirname "$0")/.."
trials=${1:-50}
seed=${2:-8}
dotnet build tests/Spm.Cli.Tests -c Release -v q -nologo
SPM_KILL_TRIALS=$trials SPM_KILL_SEED=$seed dotnet test tests/Spm.Cli.Tests -c Release --no-build \
  --filter "FullyQualifiedName~KillTests" --logger "console;verbosity=detailed" | grep -E "kill test:|Passed|Failed|error|Assert" 
