#!/bin/sh
# A scraper pipeline into casectl: a CSV export (agency,reference,offender,
# postcode,date,fine,result) turned into JSON lines by jq, ingested with
# casectl; each new case is announced as case:created, each known one as
# case:synced.
#   scrape-to-casectl.sh export.csv
set -eu
[ $# -eq 1 ] || { echo "usage: scrape-to-casectl.sh FILE.csv" >&2; exit 2; }
tail -n +2 "$1" |
	jq -R -c 'split(",") | {agency: .[0], case_reference: .[1],
		offender: {name: .[2], postcode: .[3]}, offence_action_date: .[4],
		offence_fine: (.[5] | tonumber), offence_result: .[6]}' |
	casectl ingest
