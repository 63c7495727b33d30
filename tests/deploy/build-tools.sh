#!/usr/bin/env bash
# Builds the validators the deploy tests run, from the Go module proxy only (checksums
# verified against sum.golang.org), cached in ${LINEMON_CACHE:-~/.cache/linemon}:
#   docker-compose  Docker Compose v2: `config` loads, interpolates and validates
#                   deploy/docker-compose.yml against the compose-spec schema, no engine
#   kustomize       builds deploy/kubernetes as `kubectl apply -k` would
# Their paths are recorded in .cache/<tool>-path for the tests. First run about 6 min on
# 2 cores (mostly compose), instant afterwards.
#
# Why from source: Debian's docker-compose is v1.29 (an older schema), Debian has no
# kustomize, no Docker engine runs on the build machines, and GitHub release downloads are
# not reachable from them.
set -euo pipefail
cd "$(dirname "$0")/../.."
COMPOSE_VERSION=v2.40.3
KUSTOMIZE_VERSION=v5.8.1
CACHE_ROOT=${LINEMON_CACHE:-$HOME/.cache/linemon}
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
export CGO_ENABLED=0

log() { printf '[build-tools] %s\n' "$*" >&2; }
command -v go >/dev/null || { log "ERROR: go not found (need Go >= 1.24)"; exit 1; }
mkdir -p "$CACHE_ROOT" .cache

# <name> <version> <binary path> <build command...>: build unless cached, record the path.
cached_build() {
    local name=$1 version=$2 bin=$3
    shift 3
    if ! { [[ -x $bin ]] && "$bin" version 2>/dev/null | grep -q "${version#v}"; }; then
        (
            flock -w 3600 9
            mkdir -p "$(dirname "$bin")"
            log "building $name $version (log: $(dirname "$bin")/build.log)"
            local start=$SECONDS
            if ! "$@" >"$(dirname "$bin")/build.log" 2>&1; then
                tail -n 40 "$(dirname "$bin")/build.log" >&2
                log "ERROR: $name build failed"
                exit 1
            fi
            log "built $name $version in $((SECONDS - start)) s"
        ) 9>"$CACHE_ROOT/.$name-$version.lock"
    fi
    echo "$bin" > ".cache/$name-path"
    log "$name: $bin"
}

# `go install module/cmd@version` refuses compose (its go.mod has exclude directives), so
# the module is downloaded and built in place.
build_compose() {
    local bin=$1 work src
    work=$(mktemp -d)
    trap 'rm -rf "$work"' RETURN
    src=$(cd "$work" && go mod download -json "github.com/docker/compose/v2@$COMPOSE_VERSION" \
          | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
    [[ -n $src && -d $src ]] || return 1
    cp -r "$src" "$work/compose"
    chmod -R u+w "$work/compose"
    (cd "$work/compose" && go build -trimpath \
        -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" \
        -o "$bin" ./cmd)
}

build_kustomize() {
    GOBIN=$(dirname "$1") go install -trimpath "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
}

compose_bin=$CACHE_ROOT/docker-compose-$COMPOSE_VERSION/docker-compose
kustomize_bin=$CACHE_ROOT/kustomize-$KUSTOMIZE_VERSION/kustomize
cached_build docker-compose "$COMPOSE_VERSION" "$compose_bin" build_compose "$compose_bin"
cached_build kustomize "$KUSTOMIZE_VERSION" "$kustomize_bin" build_kustomize "$kustomize_bin"
