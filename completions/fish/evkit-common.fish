# Shared by the fish completions of the evkit programs with subcommands
# (casectl, evworker), which source it (installed next to them): the
# subcommands first, each with what it does, then only the options of the
# subcommand on the line.

# __evkit_subcommands PROG ARG... — PROG's subcommands, offered with what
# each does until one is on the line; no file names where nothing asks for
# them. The subcommands come from PROG itself, run with ARG...: its
# command table as "NAME<tab>WHAT" lines (casectl --complete-words
# commands-help, evworker --complete), so none is missing here.
function __evkit_subcommands
    set -l prog $argv[1]
    set -l subs
    command -q $prog; and set subs (string match -r -- '^[a-z]+\t.*' (command $argv 2>/dev/null))
    set -g __evkit_cmds_$prog (string replace -r -- '\t.*' '' $subs)
    complete -c $prog -f
    for s in $subs
        set -l nd (string split -m 1 \t -- $s)
        complete -c $prog -n "__evkit_before_subcommand $prog" -a $nd[1] -d $nd[2]
    end
end

# __evkit_before_subcommand PROG — true until one of PROG's subcommands is
# on the line: the options of every subcommand are offered there.
function __evkit_before_subcommand
    set -l cmds __evkit_cmds_$argv[1]
    not __fish_seen_subcommand_from $$cmds
end
