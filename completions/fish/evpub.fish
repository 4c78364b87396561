# fish completion for evpub(1)
complete -c evpub -f
complete -c evpub -l bus -x -a 'ipc:// tcp://127.0.0.1: tls+tcp:// nats://127.0.0.1:4222' -d 'the hub'
complete -c evpub -s f -l file -r -F -d 'read JSON lines from FILE (- is stdin)'
complete -c evpub -s t -l topic -x -d 'each input line is a payload for this topic'
complete -c evpub -s e -l event -x -d '... and this event name'
complete -c evpub -l raw -x -d 'the payload is TEXT, as a JSON string'
complete -c evpub -l strict -d 'stop at the first bad line'
complete -c evpub -l echo -d 'print each acknowledged event, with its seq'
complete -c evpub -l max-line -x -d 'longest input line'
complete -c evpub -s h -l help -d 'print usage'
complete -c evpub -l version -d 'print the version'
