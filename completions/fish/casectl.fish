# fish completion for casectl(1): the subcommand (from casectl's own command
# table), then only its options.
source (status dirname)/evkit-common.fish
__evkit_subcommands casectl --complete-words commands-help
complete -c casectl -n '__evkit_before_subcommand casectl' -l db -r -F -d 'the database'
complete -c casectl -n '__evkit_before_subcommand casectl' -l bus -x -a 'ipc:// tcp://127.0.0.1: tls+tcp:// nats://127.0.0.1:4222' -d 'the hub'
complete -c casectl -n '__evkit_before_subcommand casectl' -l actor -x -d 'act as NAME'
complete -c casectl -n '__evkit_before_subcommand casectl' -l max-line -x -d 'longest input line'
complete -c casectl -n '__evkit_before_subcommand casectl' -s h -l help -d 'print usage'
complete -c casectl -n '__evkit_before_subcommand casectl' -l version -d 'print the version'
complete -c casectl -n "__fish_seen_subcommand_from init" -l admin -x -d 'the first admin'
complete -c casectl -n "__fish_seen_subcommand_from user; and not __fish_seen_subcommand_from add list" -a 'add list'
complete -c casectl -n "__fish_seen_subcommand_from user" -l role -x -a 'admin editor viewer' -d 'the role'
for sub in list watch
    complete -c casectl -n "__fish_seen_subcommand_from $sub" -l agency -x -d 'agency code'
    complete -c casectl -n "__fish_seen_subcommand_from $sub" -l offender -x -d 'offender name contains'
    complete -c casectl -n "__fish_seen_subcommand_from $sub" -l since -x -d 'changed since TS'
    complete -c casectl -n "__fish_seen_subcommand_from $sub" -l sort -x -a 'inserted_at updated_at offence_action_date offence_fine offence_costs case_reference last_synced_at' -d 'order by'
    complete -c casectl -n "__fish_seen_subcommand_from $sub" -l limit -x -d 'at most N'
end
complete -c casectl -n "__fish_seen_subcommand_from watch" -l refetch-window -x -d 'at most once per MS'
complete -c casectl -n "__fish_seen_subcommand_from watch" -s n -l count -x -d 'exit after N lists'
complete -c casectl -n "__fish_seen_subcommand_from ingest" -l strict -d 'stop at the first bad line'
complete -c casectl -n "__fish_seen_subcommand_from ingest" -l batch -x -d 'cases per transaction'
complete -c casectl -n "__fish_seen_subcommand_from ingest create" -F
complete -c casectl -n "__fish_seen_subcommand_from outbox; and not __fish_seen_subcommand_from list flush" -a 'list flush'
complete -c casectl -n '__evkit_before_subcommand casectl' -l tls-cert -r -F -d 'certificate for tls+tcp:// addresses'
complete -c casectl -n '__evkit_before_subcommand casectl' -l tls-key -r -F -d 'its key'
complete -c casectl -n '__evkit_before_subcommand casectl' -l tls-ca -r -F -d 'the CA that signs the peer'
