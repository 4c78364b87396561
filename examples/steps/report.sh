#!/bin/sh
# Step 3: a summary of what the database now holds.
set -eu
db=$1
casectl --db "$db" list --limit 1000 |
	jq -s -c '{cases: length, fines: (map(.offence_fine // 0) | add)}' >&"$EVWORKER_PROGRESS_FD"
echo 100 report ready >&"$EVWORKER_PROGRESS_FD"
