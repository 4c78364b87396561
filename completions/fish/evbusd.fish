# fish completion for evbusd(1)
complete -c evbusd -f
complete -c evbusd -l bus -x -a 'ipc:// tcp://127.0.0.1: tls+tcp://' -d 'listen here'
complete -c evbusd -l store -r -F -d 'the event log'
complete -c evbusd -l memory -d 'keep the log in memory only'
complete -c evbusd -l retain -x -d 'events the log keeps'
complete -c evbusd -l synchronous -x -a 'normal full' -d 'what an acknowledged event survives'
complete -c evbusd -l daemon -d 'go to the background once accepting connections'
complete -c evbusd -l pidfile -r -F -d 'write the pid to FILE'
complete -c evbusd -l status -d "print the running hub's figures as JSON"
complete -c evbusd -l help -d 'print usage'
complete -c evbusd -l version -d 'print the version'
complete -c evbusd -l tls-cert -r -F -d 'certificate for tls+tcp:// addresses'
complete -c evbusd -l tls-key -r -F -d 'its key'
complete -c evbusd -l tls-ca -r -F -d 'the CA that signs the peer'
complete -c evbusd -l insecure -d 'listen on tcp beyond loopback without TLS'
complete -c evbusd -l log -r -F -d 'with --daemon, messages to FILE'
complete -c evbusd -s q -l quiet -d 'errors only'
complete -c evbusd -s v -l verbose -d 'more messages'
