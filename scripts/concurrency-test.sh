#!/usr/bin/env bash
# The concurrency acceptance run (tests/Spm.Diffusion.Tests/Reliability/ConcurrencyTests.cs, TwentyRoundsInARow):
# one pipeline with two SPMs injected, ROUNDS rounds of 8 concurrent requests with different SPM sets and gates
# (plus one request cancelled mid-generation every other round), each compared bit for bit with the sequential results.
#   scripts/concurrency-test.sh [ROUNDS=20]
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build tests/Spm.Diffusion.Tests -c Release -v q -nologo
SPM_CONCURRENCY_ROUNDS=${1:-20} dotnet test tests/Spm.Diffusion.Tests -c Release --no-build \
  --filter "Name=TwentyRoundsInARow" --logger "console;verbosity=detailed" | grep -E "round|Passed|Failed|Assert"
