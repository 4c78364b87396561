#!/bin/sh
# Step 1 of the demo workflow: check the sample cases file, line by line,
# reporting real progress on $EVWORKER_PROGRESS_FD.
set -eu
file=$1
total=$(wc -l <"$file")
n=0
while IFS= read -r line; do
	n=$((n + 1))
	printf '%s\n' "$line" | jq -e '.agency and .case_reference' >/dev/null
	echo "$((n * 100 / total)) checked $n of $total" >&"$EVWORKER_PROGRESS_FD"
	sleep 0.1
done <"$file"
echo "all $total cases valid" >&"$EVWORKER_PROGRESS_FD"
