#!/bin/sh
# The upgrade hook of the real-Moodle test: records what a visitor gets from the site while
# the upgrade starts (it must be 503, maintenance), then runs Moodle's upgrade.
set -eu
here=$(dirname "$0")
curl -s -o /dev/null -w '%{http_code}\n' "$(cat "$here/../wwwroot")/" >> "$here/../status-during-upgrade"
exec php "$1/admin/cli/upgrade.php" --non-interactive
