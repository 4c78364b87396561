# fish completion for evworker(1): the subcommand (from evworker's own command
# table), then only its options.
source (status dirname)/evkit-common.fish
__evkit_subcommands evworker --complete
complete -c evworker -n '__evkit_before_subcommand evworker' -l db -r -F -d 'the queue database'
complete -c evworker -n '__evkit_before_subcommand evworker' -l bus -x -a 'ipc:// tcp://127.0.0.1: tls+tcp:// nats://127.0.0.1:4222' -d 'the hub'
complete -c evworker -n '__evkit_before_subcommand evworker' -s h -l help -d 'print usage'
complete -c evworker -n '__evkit_before_subcommand evworker' -s q -l quiet -d 'errors only'
complete -c evworker -n '__evkit_before_subcommand evworker' -s v -l verbose -d 'more messages'
complete -c evworker -n '__evkit_before_subcommand evworker' -l version -d 'print the version'
# enqueue and on share the job options
for sub in enqueue on
    complete -c evworker -n "__fish_seen_subcommand_from $sub" -l queue -x -d 'the queue'
    complete -c evworker -n "__fish_seen_subcommand_from $sub" -l priority -x -a '0 1 2 3 4 5 6 7 8 9' -d '0 (first) to 9'
    complete -c evworker -n "__fish_seen_subcommand_from $sub" -l max-attempts -x -d 'attempts before discarding'
    complete -c evworker -n "__fish_seen_subcommand_from $sub" -l backoff -x -d 'base of the exponential backoff'
    complete -c evworker -n "__fish_seen_subcommand_from $sub" -l timeout -x -d 'kill the job after SEC'
    complete -c evworker -n "__fish_seen_subcommand_from $sub" -l in -x -d 'run after SEC'
    complete -c evworker -n "__fish_seen_subcommand_from $sub" -l at -x -d 'run at TS'
    complete -c evworker -n "__fish_seen_subcommand_from $sub" -l unique-for -x -d 'no duplicate within SEC'
    complete -c evworker -n "__fish_seen_subcommand_from $sub" -l workflow -x -d 'the workflow id'
    complete -c evworker -n "__fish_seen_subcommand_from $sub" -l resource -x -d 'the resource id'
end
complete -c evworker -n "__fish_seen_subcommand_from enqueue" -l steps -r -F -d 'a workflow of steps'
complete -c evworker -n "__fish_seen_subcommand_from on" -l name -x -d 'the job name'
complete -c evworker -n "__fish_seen_subcommand_from on" -l ready-file -r -F -d 'create once subscribed'
complete -c evworker -n "__fish_seen_subcommand_from on" -a "'**' 'workflow:*' 'workflow:**' 'process:*' 'process:**' 'resource:*' 'resource:**' 'case:**' 'case:created' 'case:created:*' 'case:synced:*' 'case:updated:*' 'case:destroyed:*' 'widget:*' 'widget:**'" -d 'topic pattern'
complete -c evworker -n "__fish_seen_subcommand_from run" -l queue -x -d 'only this queue'
complete -c evworker -n "__fish_seen_subcommand_from run" -l concurrency -x -d 'jobs at once'
complete -c evworker -n "__fish_seen_subcommand_from run" -l drain -d 'stop when no job is due'
complete -c evworker -n "__fish_seen_subcommand_from run" -l grace -x -d 'seconds to finish on SIGTERM'
complete -c evworker -n "__fish_seen_subcommand_from list" -l state -x -a 'available scheduled executing retryable completed discarded cancelled' -d 'only this state'
complete -c evworker -n "__fish_seen_subcommand_from list" -l queue -x -d 'only this queue'
complete -c evworker -n "__fish_seen_subcommand_from prune" -l older-than -x -d 'finished more than SEC ago'
complete -c evworker -n '__evkit_before_subcommand evworker' -l tls-cert -r -F -d 'certificate for tls+tcp:// addresses'
complete -c evworker -n '__evkit_before_subcommand evworker' -l tls-key -r -F -d 'its key'
complete -c evworker -n '__evkit_before_subcommand evworker' -l tls-ca -r -F -d 'the CA that signs the peer'
complete -c evworker -n "__fish_seen_subcommand_from wait" -l workflow -x -d 'the workflow id'
complete -c evworker -n "__fish_seen_subcommand_from wait" -l timeout -x -d 'give up after SEC (124)'
