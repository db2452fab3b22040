#!/usr/bin/env bash
# The reload hook of the real-Moodle test: restarts the site's web server (serve.sh beside
# the site, which restarts `php -S` on SIGUSR1), so that the new code is what PHP runs even
# with opcache.validate_timestamps=0. Returns once the new server listens; exits 1 when it
# did not restart within 30 s. On a production host the same hook is
# `systemctl reload php8.2-fpm` (docs/moodle-hosts.md).
#
#   reload.sh DIR     (DIR: the folder holding serve.pid and serve.generation)
set -eu
dir=$1
pid=$(cat "$dir/serve.pid")
before=$(cat "$dir/serve.generation")
kill -USR1 "$pid"
for ((i = 0; i < 600; i++)); do
    now=$(cat "$dir/serve.generation" 2>/dev/null || true)
    if [[ -n $now && $now != "$before" ]]; then
        exit 0
    fi
    kill -0 "$pid" 2>/dev/null || { echo "reload.sh: the web server (pid $pid) has exited" >&2; exit 1; }
    sleep 0.05
done
# What serve.sh and its `php -S` were doing, for whoever reads the failure.
echo "reload.sh: the web server (pid $pid) did not restart within 30 s; its processes: $(ps -o pid=,stat=,etime=,wchan:20=,args= -g "$(ps -o pgid= -p "$pid" | tr -d ' ')" 2>/dev/null | tr -s ' ' | paste -sd ';')" >&2
exit 1
