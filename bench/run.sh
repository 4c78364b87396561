#!/bin/sh
# bench/run.sh — what `make bench` runs: every bench/*.sh in turn (but
# lib.sh, which they source), each printing its own table; fails if one
# fails.
set -u
dir=$(dirname "$0")
status=0
for b in "$dir"/*.sh; do
	case $(basename "$b") in run.sh | lib.sh) continue ;; esac # not benches
	echo "== $(basename "$b" .sh)"
	bash "$b" || { echo "bench: $(basename "$b") failed" >&2; status=1; }
	echo
done
exit $status
