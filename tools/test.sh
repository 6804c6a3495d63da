#!/usr/bin/env bash
# The README's test command: every notebook top to bottom (each with its time, whether it passes or fails), then the
# tests/ suite, also when a notebook failed. The exit status is 0 only when both passed.
# Arguments replace pytest's default ones (-n 2 -rs tests), e.g. tools/test.sh -n 2 -rs --slow tests.
cd "$(dirname "$0")/.." || exit 2
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"   # (PASSIVE: see .ci/run)
# nbdev-test --timing lists the times only when every notebook passed: this adds each one's time to its "Completed" line
timed() {
  python -u -c '
import re, sys, time
start = {}
for line in sys.stdin:
    m = re.match(r"\s*(Starting|- Completed) (\S+\.ipynb)", line)
    if m and m[1] == "Starting": start[m[2]] = time.monotonic()
    elif m and m[2] in start: line = f"{line.rstrip()} ({time.monotonic() - start.pop(m[2]):.0f} s)\n"
    sys.stdout.write(line)'
}
t0=$SECONDS
nbdev-test --do-print --timing 2>&1 | timed; nb=${PIPESTATUS[0]}
if [ $# -eq 0 ]; then set -- -n 2 -rs tests; fi
python -m pytest "$@"; py=$?
echo "notebooks: $([ "$nb" = 0 ] && echo passed || echo "FAILED (status $nb)"); tests: $([ "$py" = 0 ] && echo passed \
  || echo "FAILED (status $py)"); $((SECONDS - t0)) s in all"
exit $(( nb != 0 || py != 0 ))
