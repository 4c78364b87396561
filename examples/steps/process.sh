#!/bin/sh
# Step 2: ingest the cases with casectl (each change announced), reporting
# progress per batch of cases.
set -eu
file=$1 db=$2
total=$(wc -l <"$file")
n=0
while [ "$n" -lt "$total" ]; do
	sed -n "$((n + 1)),$((n + 3))p" "$file" | casectl --db "$db" ingest 2>/dev/null
	n=$((n + 3))
	[ "$n" -gt "$total" ] && n=$total
	echo "$((n * 100 / total)) ingested $n of $total" >&"$EVWORKER_PROGRESS_FD"
	sleep 0.2
done
