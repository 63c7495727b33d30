#!/bin/sh
# Creates the secrets docker-compose.yml reads, one random value per file, in
# deploy/secrets/ (or the directory given). Existing files are kept: rerunning is safe,
# and rotating one secret means deleting its file and running this again.
#
# The directory is 0700, the files 0644: compose bind-mounts each file into containers
# whose users (linemon 10001, mosquitto 1883, influxdb 1000) differ from yours, so the
# files must be readable by them; the directory keeps other users on this host out.
set -eu
dir=${1:-$(dirname "$0")/../secrets}
mkdir -p "$dir"
chmod 0700 "$dir"

random() { LC_ALL=C tr -dc 'A-Za-z0-9' < /dev/urandom | head -c "$1"; }

for name in influx_admin_password influx_admin_token mqtt_linemon_password \
            mqtt_simulator_password linemon_key_admin linemon_key_board; do
    file="$dir/$name"
    if [ -s "$file" ]; then
        continue
    fi
    random 40 > "$file"
    chmod 0644 "$file"
    echo "created $file" >&2
done
