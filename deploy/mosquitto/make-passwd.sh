#!/bin/sh
# Builds mosquitto's password file from one secret file per user, so no password is ever
# typed on a command line (where `ps` would show it) or stored unhashed on the broker.
#   MQTT_USERS   users to create, space separated (default: linemon)
#   SECRETS_DIR  holds mqtt_<user>_password files (default: /run/secrets)
#   PASSWD_FILE  the password file to (re)write (default: /mosquitto/auth/passwd)
# The compose service `mosquitto-auth` runs it before the broker starts; run it on a server
# the same way, with mosquitto_passwd from the mosquitto package.
set -eu
users=${MQTT_USERS:-linemon}
secrets=${SECRETS_DIR:-/run/secrets}
out=${PASSWD_FILE:-/mosquitto/auth/passwd}

umask 077
tmp="$out.new"
: > "$tmp"
for user in $users; do
    secret="$secrets/mqtt_${user}_password"
    if [ ! -s "$secret" ]; then
        echo "make-passwd: $secret is missing or empty" >&2
        rm -f "$tmp"
        exit 2
    fi
    printf '%s:%s\n' "$user" "$(cat "$secret")" >> "$tmp"
done
# -U hashes the plain-text file in place (PBKDF2-SHA512 in mosquitto 2.0).
mosquitto_passwd -U "$tmp"
# The broker drops to the mosquitto user and reads the file as that user.
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
    chown mosquitto:mosquitto "$tmp"
fi
chmod 0600 "$tmp"
mv "$tmp" "$out"
echo "make-passwd: wrote $out for: $users" >&2
