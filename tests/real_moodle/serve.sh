#!/usr/bin/env bash
# The real-Moodle site's web server: PHP's built-in server (`php -S ADDR -t DOCROOT`), kept
# running, and restarted on SIGUSR1, the way `systemctl reload php8.2-fpm` restarts PHP-FPM's
# workers: a restart empties PHP's opcode cache, whatever opcache.validate_timestamps says.
# SIGUSR1 rather than SIGHUP: a shell started with SIGHUP ignored (under `nohup`, as a
# benchmark or CI run may be) cannot trap it, and the reload would never come.
#
#   serve.sh ADDR DOCROOT DIR
#
# DIR holds the server's state: serve.pid (this script's pid, for reload.sh), serve.ini
# (PHP settings, one `name=value` a line, passed as `-d name=value`; read at every start, so
# that a test can change them and reload) and serve.generation (how many times the server has
# started; written once the new server listens). SIGTERM stops the server. Exits 1 when
# `php -S` exits by itself (the address taken, PHP missing).
set -u
addr=$1 docroot=$2 dir=$3
host=${addr%:*} port=${addr##*:}
generation=0 child= reload=0

listening() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }

start() {
    local args=() line i
    if [[ -f $dir/serve.ini ]]; then
        while IFS= read -r line; do
            [[ -n $line && $line != \#* ]] && args+=(-d "$line")
        done <"$dir/serve.ini"
    fi
    php "${args[@]}" -S "$addr" -t "$docroot" >/dev/null 2>&1 &
    child=$!
    for ((i = 0; i < 600; i++)); do
        listening && break
        kill -0 "$child" 2>/dev/null || { echo "serve.sh: php -S $addr exited at start" >&2; exit 1; }
        sleep 0.05
    done
    listening || { echo "serve.sh: php -S $addr does not listen after 30 s" >&2; exit 1; }
    generation=$((generation + 1))
    printf '%s\n' "$generation" >"$dir/serve.generation.tmp"
    mv "$dir/serve.generation.tmp" "$dir/serve.generation"
}

stop_child() {
    kill "$child" 2>/dev/null
    wait "$child" 2>/dev/null
    # The old server must have let go of the port before the new one binds it.
    local i
    for ((i = 0; i < 200; i++)); do listening || return 0; sleep 0.05; done
}

trap 'reload=1' USR1
trap 'stop_child; exit 0' TERM INT
printf '%s\n' "$$" >"$dir/serve.pid"
start
# Poll rather than `wait` for the child: a SIGUSR1 that arrives between the check of `reload`
# and a `wait` would otherwise wait for the next signal.
while :; do
    if ((reload)); then
        reload=0
        stop_child
        start
    elif ! kill -0 "$child" 2>/dev/null; then
        wait "$child"
        echo "serve.sh: php -S $addr exited (status $?)" >&2
        exit 1
    fi
    sleep 0.1 &
    wait $!
done
