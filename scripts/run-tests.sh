#!/usr/bin/env bash
# Runs every vitest suite and ends with one plain summary line: "tests: N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p tmp
report=tmp/vitest-report.json
rm -f "$report"
# Development builds of xstate report bad snapshots and misuse (design.md).
NODE_OPTIONS="${NODE_OPTIONS:-} --conditions=development" npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@"
code=$?
# A test that failed half-way may leave a session's filesystem (disk quota) mounted under the temp folder.
tmp_root="${TMPDIR:-/tmp}"
grep -o " ${tmp_root}/codegen-[^ ]*" /proc/self/mountinfo 2>/dev/null | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
if [ -f "$report" ]; then
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const skipped = (r.numPendingTests || 0) + (r.numTodoTests || 0);
    console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
    if (r.numTotalTests === 0) process.exitCode = 1;
  ' "$report" || code=1
else
  echo "tests: 0 passed, 1 failed (no report: the runner itself failed)"
  [ $code -eq 0 ] && code=1
fi
exit $code
