#!/bin/sh
# A cron job that enqueues work for evworker, at most once per window:
#   */5 * * * * /path/to/cron-enqueue.sh /opt/sync/run.sh
# --unique-for makes a second firing inside the window return the job
# already queued instead of adding one.
set -eu
[ $# -ge 1 ] || { echo "usage: cron-enqueue.sh CMD [ARG...]" >&2; exit 2; }
exec evworker enqueue --queue cron --unique-for 300 --max-attempts 5 -- "$@"
