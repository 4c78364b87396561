#!/bin/sh
# Runs the libFuzzer harnesses built in build/fuzz/ (see README.md here).
#   run.sh fuzz SECONDS NAME...   fuzz each target for SECONDS, one after another
#   run.sh regress 0 NAME...      run each target's seeds and kept crashes once
# Exits 1 when a target crashes (the input is kept in build/fuzz/crashes/NAME/).
set -u
mode=$1 secs=$2
shift 2
B=build/fuzz
status=0
for t in "$@"; do
	bin=$B/fuzz_$t
	seeds=tests/fuzz/corpus/$t
	kept=tests/fuzz/regress/$t
	# Per-target libFuzzer flags, one file (e.g. -detect_leaks=0).
	opts=
	[ -f tests/fuzz/fuzz_$t.options ] && opts=$(cat tests/fuzz/fuzz_$t.options)
	log=$B/$t.log
	case $mode in
	fuzz)
		mkdir -p "$B/corpus/$t" "$B/crashes/$t"
		dirs="$B/corpus/$t"
		for d in "$seeds" "$kept"; do [ -d "$d" ] && dirs="$dirs $d"; done
		# shellcheck disable=SC2086 # word splitting of opts and dirs is meant
		$bin -max_total_time="$secs" -timeout=20 -print_final_stats=1 \
			-artifact_prefix="$B/crashes/$t/" $opts $dirs >"$log" 2>&1
		rc=$?
		runs=$(LC_ALL=C sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
		done_line=$(grep -aE '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)
		cov=$(echo "$done_line" | sed -n 's/.*cov: \([0-9]*\) ft: \([0-9]*\).*/cov \1 ft \2/p')
		if [ $rc -ne 0 ]; then
			tail -n 40 "$log"
			echo "fuzz: $t: CRASH after ${runs:-?} runs; input kept in $B/crashes/$t/;" \
				"fix it and add the file to $kept/ (log: $log)" >&2
			status=1
		else
			echo "fuzz: $t: ${runs:-?} runs in ${secs}s, ${cov:-cov ?}, 0 crashes"
		fi
		;;
	regress)
		files=$(find "$seeds" "$kept" -type f 2>/dev/null | sort)
		if [ -z "$files" ]; then
			echo "fuzz-regress: $t: no inputs"
			continue
		fi
		n=$(echo "$files" | wc -l)
		# shellcheck disable=SC2086
		if $bin -timeout=20 $opts $files >"$log" 2>&1; then
			echo "fuzz-regress: $t: $n inputs ok"
		else
			tail -n 40 "$log"
			echo "fuzz-regress: $t: FAILED (log: $log)" >&2
			status=1
		fi
		;;
	*)
		echo "usage: run.sh fuzz SECONDS NAME... | run.sh regress 0 NAME..." >&2
		exit 2
		;;
	esac
done
exit $status
