#!/bin/sh
# Docker and Kubernetes hand secrets over as files; linemon reads every secret from the
# environment variable its config names. For each LINEMON_<NAME>_FILE=<path>, export
# LINEMON_<NAME> with the file's content (without its trailing newline), then run the command.
# Only LINEMON_* names: other *_FILE variables (SSL_CERT_FILE, ...) mean a path, not a secret.
set -eu

for name in $(env | sed -n 's/^\(LINEMON_[A-Za-z0-9_]*\)_FILE=.*/\1/p'); do
    eval "path=\${${name}_FILE}"
    if [ ! -r "$path" ]; then
        echo "entrypoint: ${name}_FILE=$path is not a readable file" >&2
        exit 2
    fi
    eval "already=\${${name}:-}"
    if [ -n "$already" ]; then
        echo "entrypoint: both $name and ${name}_FILE are set; use one" >&2
        exit 2
    fi
    value=$(cat "$path")
    export "$name=$value"
    unset "${name}_FILE"
done

exec "$@"
