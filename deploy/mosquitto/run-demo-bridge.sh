#!/bin/sh
# Starts the demo bridge broker with the simulator's password taken from its secret file.
#   BRIDGE_TEMPLATE  default /mosquitto/config/demo-bridge.conf
#   SECRET           default /run/secrets/mqtt_simulator_password
#   BRIDGE_CONF      where the filled-in config goes (default /tmp/demo-bridge.conf)
set -eu
template=${BRIDGE_TEMPLATE:-/mosquitto/config/demo-bridge.conf}
secret=${SECRET:-/run/secrets/mqtt_simulator_password}
conf=${BRIDGE_CONF:-/tmp/demo-bridge.conf}
umask 077
password=$(cat "$secret")
# From the environment, not sed or awk -v: those would interpret characters in the password.
PW="$password" awk '{ if ($0 ~ /^remote_password /) print "remote_password " ENVIRON["PW"]; else print }' \
    "$template" > "$conf"
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
    chown mosquitto "$conf"
fi
exec mosquitto -c "$conf"
