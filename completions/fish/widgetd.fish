# fish completion for widgetd(1): the daemon's options, or a subcommand.
set -l cmds get view session
complete -c widgetd -f
complete -c widgetd -n "not __fish_seen_subcommand_from $cmds" -l bus -x -a 'ipc:// tcp://127.0.0.1: tls+tcp:// nats://127.0.0.1:4222' -d 'the hub'
complete -c widgetd -n "not __fish_seen_subcommand_from $cmds" -l config -r -F -d 'widgets to keep (JSON)'
complete -c widgetd -n "not __fish_seen_subcommand_from $cmds" -l cases-db -r -F -d "casectl's database"
complete -c widgetd -n "not __fish_seen_subcommand_from $cmds" -l state -r -F -d 'state and last applied seq'
complete -c widgetd -n "not __fish_seen_subcommand_from $cmds" -l throttle -x -d 'per widget publishing window'
complete -c widgetd -n "not __fish_seen_subcommand_from $cmds" -l daemon -d 'go to the background once subscribed'
complete -c widgetd -n "not __fish_seen_subcommand_from $cmds" -l pidfile -r -F -d 'write the pid to FILE'
complete -c widgetd -n "not __fish_seen_subcommand_from $cmds" -s W -l wait -x -d 'wait this long for the daemon'
complete -c widgetd -n "not __fish_seen_subcommand_from $cmds" -s h -l help -d 'print usage'
complete -c widgetd -n "not __fish_seen_subcommand_from $cmds" -l version -d 'print the version'
complete -c widgetd -n "not __fish_seen_subcommand_from $cmds" -a get -d 'one widget or all, as JSON'
complete -c widgetd -n "not __fish_seen_subcommand_from $cmds" -a view -d 'live dashboard'
complete -c widgetd -n "not __fish_seen_subcommand_from $cmds" -a session -d 'start or stop session lists'
complete -c widgetd -n "__fish_seen_subcommand_from session; and not __fish_seen_subcommand_from start stop" -a 'start stop'
complete -c widgetd -n "not __fish_seen_subcommand_from $cmds" -l tls-cert -r -F -d 'certificate for tls+tcp:// addresses'
complete -c widgetd -n "not __fish_seen_subcommand_from $cmds" -l tls-key -r -F -d 'its key'
complete -c widgetd -n "not __fish_seen_subcommand_from $cmds" -l tls-ca -r -F -d 'the CA that signs the peer'
complete -c widgetd -n "not __fish_seen_subcommand_from $cmds" -l log -r -F -d 'with --daemon, messages to FILE'
complete -c widgetd -n "not __fish_seen_subcommand_from $cmds" -s q -l quiet -d 'errors only'
complete -c widgetd -n "not __fish_seen_subcommand_from $cmds" -s v -l verbose -d 'more messages'
