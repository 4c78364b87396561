#!/bin/sh
# bench/run.sh — what `make bench` runs: every bench/*.sh in turn, each
# printing its own table; fails if one fails.
set -u
dir=$(dirname "$0")
status=0
for b in "$dir"/*.sh; do
	[ "$(basename "$b")" = run.sh ] && continue
	echo "== $(basename "$b" .sh)"
	bash "$b" || { echo "bench: $(basename "$b") failed" >&2; status=1; }
	echo
done
exit $status
