#!/bin/bash
# Enqueue a workflow and wait for it: exit 0 when it completes, 1 when it
# fails for good, 124 when it takes longer than the timeout.
#   wait-for-workflow.sh STEPS.json WORKFLOW-ID [TIMEOUT-SEC [ENQUEUE-OPTION...]]
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: wait-for-workflow.sh STEPS.json WORKFLOW-ID [SEC]" >&2; exit 2; }
steps=$1 wf=$2 timeout=${3:-600}
shift $(($# < 3 ? $# : 3))
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# Subscribe first, so the end cannot slip by between enqueue and wait.
evsub --ready-file "$dir/ready" --event workflow_completed --event workflow_failed \
	-o payload "workflow:$wf" | jq -c --unbuffered 'select(.will_retry != true)' >"$dir/end" &
sub=$!
while [ ! -e "$dir/ready" ]; do sleep 0.01; done
evworker enqueue "$@" --steps "$steps" --workflow "$wf" >/dev/null
deadline=$((SECONDS + timeout))
until [ -s "$dir/end" ]; do
	if ((SECONDS >= deadline)); then kill "$sub"; exit 124; fi
	sleep 0.1
done
kill "$sub" 2>/dev/null || true
[ "$(jq -r .status "$dir/end")" = completed ]
