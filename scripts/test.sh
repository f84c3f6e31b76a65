#!/usr/bin/env bash
# The test command of the README: provisions what the tests need (Chromium for the WebDemo browser test), builds the
# solution, runs every NUnit suite (the test projects in two parallel lanes), then prints one summary line:
#   N passed, N failed, N skipped
# where "skipped" is every test that was found but not run ([Explicit] and [Ignore] tests), each listed above it.
#
#   ./scripts/test.sh             the whole suite (what CI runs)
#   ./scripts/test.sh --fast      everything but the tests in category Slow (training and model tests)
#   ./scripts/test.sh ARGS...     extra arguments go to `dotnet test` (e.g. --filter "FullyQualifiedName~Gate")
# SPM_TEST_RESULTS=DIR keeps the trx files (per-test durations) in DIR instead of a temporary folder.
set -uo pipefail
cd "$(dirname "$0")/.."

fast=0; filter=""; args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --fast) fast=1 ;;
    --filter) filter="${2:-}"; shift ;;
    --filter=*) filter="${1#--filter=}" ;;
    *) args+=("$1") ;;
  esac
  shift
done
if [ "$fast" -eq 1 ]; then
  # Category names are matched exactly; see tests/Common/TestCategories.cs.
  filter="${filter:+($filter)&}TestCategory!=Slow"
fi
[ -n "$filter" ] && args+=(--filter "$filter")

# The WebDemo browser test drives Debian's Chromium. Install it when it is missing (needs root or password-less sudo);
# if that fails the test still runs and fails with the reason: it is never skipped.
chromium="${SPM_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  echo "test.sh: $chromium is missing; installing Chromium for the WebDemo browser test (scripts/install-chromium.sh)..."
  if ! ./scripts/install-chromium.sh; then
    echo "test.sh: error: Chromium could not be installed, so the WebDemo browser test will FAIL." >&2
    echo "test.sh:        install Debian's 'chromium' package as root, or set SPM_CHROMIUM=/path/to/chromium." >&2
  fi
fi

if [ -n "${SPM_TEST_RESULTS:-}" ]; then
  results="$SPM_TEST_RESULTS"; rm -rf "$results"; mkdir -p "$results"
else
  results=$(mktemp -d)
  trap 'rm -rf "$results"' EXIT
fi
# Two lanes of two NUnit workers each share two cores: ONNX Runtime threads that spin while they wait only take CPU
# from the other workers (measured: the built-in model's tests used 46 s of CPU with spinning, 34 s without, same
# wall time). SPM_ORT_SPIN is read by OnnxRuntimeOptions; results do not depend on it.
export SPM_ORT_SPIN="${SPM_ORT_SPIN:-0}"
started=$(date +%s)
dotnet build Spm.sln -c Release -nologo -clp:NoSummary -v:quiet || { echo "test.sh: the build failed" >&2; echo "0 passed, 1 failed, 0 skipped"; exit 1; }
built=$(date +%s)

# Two lanes of test projects, one per core of the project's 2-core machine, the longest project first in its own lane.
# `dotnet test Spm.sln` also runs two at a time, but in solution order, so Training (the longest) started only after
# two others had finished; all five at once was slower still (ten ONNX Runtime threads spinning on two cores). Each
# project's console output goes to a file and is shown whole at the end, so the logs do not interleave.
if [ "$fast" -eq 1 ]; then
  lanes=("Spm.Diffusion.Tests" "Spm.Cli.Tests Spm.Training.Tests Spm.WebDemo.Tests Spm.Core.Tests")
else
  # Measured alone (session 15): Training 449 s; Diffusion 212, Cli 246, WebDemo 13, Core 10 s: the two short ones
  # go after Training so the lanes end together.
  lanes=("Spm.Training.Tests Spm.WebDemo.Tests Spm.Core.Tests" "Spm.Diffusion.Tests Spm.Cli.Tests")
fi
projects=()
for lane in "${lanes[@]}"; do projects+=($lane); done
run_lane() {
  local p lane_status=0
  for p in $1; do
    local t0=$(date +%s)
    if ! dotnet test "tests/$p/$p.csproj" -c Release --no-build --logger "trx" --results-directory "$results/$p" "${args[@]}" \
      >"$results/$p.log" 2>&1; then
      lane_status=1
      echo failed >"$results/$p.exit"
    fi
    echo "$p: $(( $(date +%s) - t0 )) s" >"$results/$p.time"
  done
  return $lane_status
}
pids=()
for lane in "${lanes[@]}"; do
  run_lane "$lane" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  wait "$pid" || status=1
done
for p in "${projects[@]}"; do
  echo "=== $p"
  grep -v -e '^\s*$' -e '^Results File:' "$results/$p.log"
done
echo "=== wall time per project (the dotnet test process): $(cat "$results"/*.time | tr '\n' ';' | sed 's/;$//; s/;/; /g')"

# Count from each test's own result: the trx <Counters> element leaves [Explicit] tests out of notExecuted (it reports
# them only as total - executed), so summing its attributes said "0 skipped" while tests were skipped.
passed=0; failed=0; skipped=0; runs=0
for p in "${projects[@]}"; do
  # A test host that crashed writes no results: count the project as one failure rather than let it vanish.
  if ! ls "$results/$p"/*.trx >/dev/null 2>&1; then echo "test.sh: $p wrote no test results (see its log above)" >&2; failed=$((failed + 1)); fi
done
for p in "${projects[@]}"; do
  # A test host that crashed mid-run (a native fault in ONNX Runtime, say) leaves a partial trx whose tests all passed
  # while `dotnet test` failed: count that as a failure too, so the summary line never says "0 failed" for a crash.
  # (Not grep -q at the end of the pipe: under pipefail its early exit fails the first grep with SIGPIPE.)
  if [ -f "$results/$p.exit" ] && ls "$results/$p"/*.trx >/dev/null 2>&1 &&
     ! grep -ho '<UnitTestResult [^>]*>' "$results/$p"/*.trx | grep -v 'outcome="\(Passed\|NotExecuted\|Inconclusive\|Pending\|NotRunnable\)"' >/dev/null; then
    echo "test.sh: $p: dotnet test failed but no test failed (did the test host crash? see its log above)" >&2
    failed=$((failed + 1))
  fi
done
for f in "$results"/*/*.trx; do
  [ -f "$f" ] || continue
  runs=$((runs + 1))
  while IFS=$'\t' read -r outcome name; do
    case "$outcome" in
      Passed) passed=$((passed + 1)) ;;
      NotExecuted|Inconclusive|Pending|NotRunnable) skipped=$((skipped + 1)); echo "skipped: $name" ;;
      *) failed=$((failed + 1)) ;; # Failed, Error, Timeout, Aborted, ...
    esac
  done < <(grep -o '<UnitTestResult [^>]*>' "$f" |
    sed -n 's/.* testName="\([^"]*\)".* outcome="\([A-Za-z]*\)".*/\2\t\1/p')
done
elapsed=$(( $(date +%s) - started ))
[ "$fast" -eq 1 ] && echo "--fast: the tests in category Slow were not run (not counted as skipped)"
echo "time: $((elapsed / 60)) min $((elapsed % 60)) s in all, of which the build $((built - started)) s; $runs test project(s)"
echo "${passed} passed, ${failed} failed, ${skipped} skipped"
if [ "$passed" -eq 0 ]; then echo "no test ran" >&2; exit 1; fi
if [ "$failed" -gt 0 ] && [ "$status" -eq 0 ]; then status=1; fi
exit $status
