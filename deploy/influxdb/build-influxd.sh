#!/usr/bin/env bash
# Build a real InfluxDB 2.x `influxd` from source and cache it outside the repository.
#
#   INFLUXD=$(bash deploy/influxdb/build-influxd.sh)
#
# stdout: exactly one line, the absolute path of the cached binary.
# stderr: progress. Full tool output goes to <cache>/influxd-<version>/build.log.
#
# Cache: ${LINEMON_CACHE:-$HOME/.cache/linemon}/influxd-<version>/influxd
# If that binary exists and `influxd version` reports the pinned version, the
# script prints its path and exits at once; otherwise it builds it, holding a
# flock so that concurrent callers build only once.
#
# Sources come only from package registries:
#   - Go module proxy: github.com/influxdata/influxdb/v2 and its dependencies,
#     including github.com/influxdata/flux, whose Rust `libflux` is built here
#     (checksums verified by `go` against sum.golang.org);
#   - crates.io: libflux's crates (cargo, `--locked` to flux's Cargo.lock).
# Needs: go (>= 1.23), cargo/rustc (tested with 1.95), a C compiler,
# pkg-config, flock. gcc/libc6-dev/pkg-config/util-linux are apt-installed
# when missing; go and cargo are not (Debian's packages are too old).
#
# Version choice: 2.7.12, the newest 2.x whose exact, upstream-pinned
# dependency set can be fetched and verified from the registries here:
#   - v2.10.0 (newest listed) pins flux v0.201.0 and pkg-config v0.3.1, both
#     refused by the module proxy ("403 This module version is not
#     available"); it also declares `go 1.26.9` (local Go is 1.26.8). Building
#     it would mean substituting dependency versions upstream never shipped.
#   - v2.8.0's go.mod cannot be verified: sum.golang.org lookup is 404.
#   - v2.7.12 (flux v0.196.1) downloads and verifies cleanly and builds with
#     current Go/Rust given the two adjustments below.
# Note: OSS 2.x (2.7.12 and 2.10.0 alike) ignores a `params` field in the
# /api/v2/query body (that is InfluxDB Cloud only); influxdb-client-python
# sends its `params=` as `extern` option statements, which do work. See
# deploy/influxdb/README.md for run flags and fixture notes.
#
# Adjustments to the upstream sources (made in a private copy, never in the
# Go module cache):
#   1. flux's rust-toolchain.toml pins Rust 1.72 (rustup would try to
#      download it); it is removed from the copy so the default toolchain is used.
#   2. libflux enables `deny(warnings, missing_docs)` (feature "strict");
#      newer rustc lints (mismatched_lifetime_syntaxes, dead_code) then fail
#      the build. RUSTFLAGS="--cap-lints warn" turns them back into warnings.
#      (cargo is run without --target so RUSTFLAGS also reaches the host copy
#      of flux-core used by flux's build.rs.)
# libflux is then linked through a generated flux.pc (what InfluxData's
# pkg-config wrapper would produce), so the wrapper itself is not needed.
set -euo pipefail

INFLUXDB_VERSION=2.7.12
GO_TAGS=sqlite_foreign_keys,sqlite_json   # COMMON_TAGS of upstream GNUmakefile, minus `assets` (no UI)

CACHE_ROOT=${LINEMON_CACHE:-$HOME/.cache/linemon}
DEST=$CACHE_ROOT/influxd-$INFLUXDB_VERSION
BIN=$DEST/influxd
WORK=$DEST/work
LOG=$DEST/build.log
LOCK=$CACHE_ROOT/.influxd-$INFLUXDB_VERSION.lock

# Keep stdout for the final path only.
exec 3>&1 1>&2

log() { printf '[build-influxd] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

is_cached() {
    [[ -x $BIN ]] && "$BIN" version 2>/dev/null | grep -q "InfluxDB v$INFLUXDB_VERSION"
}

done_ok() { printf '%s\n' "$BIN" >&3; exit 0; }

if is_cached; then done_ok; fi

# --- tools -------------------------------------------------------------------
apt_install() {
    local sudo=
    if [[ $EUID -ne 0 ]]; then
        command -v sudo >/dev/null || die "need root or sudo to apt-get install $*"
        sudo="sudo -n"
    fi
    log "apt-get install $*"
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >&2
}

missing=()
command -v flock >/dev/null || missing+=(util-linux)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v cc >/dev/null || missing+=(gcc libc6-dev)
if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
command -v go >/dev/null || die "go not found (need Go >= 1.23)"
command -v cargo >/dev/null || die "cargo not found (need Rust >= 1.72; tested with 1.95)"

mkdir -p "$CACHE_ROOT"
exec 9>"$LOCK"
if ! flock -n 9; then
    log "another build holds $LOCK; waiting"
    flock -w 7200 9 || die "timed out waiting for $LOCK"
fi
if is_cached; then log "built by a concurrent caller"; done_ok; fi

# --- build ---------------------------------------------------------------------
start=$SECONDS
mkdir -p "$DEST"
rm -rf "$WORK"
mkdir -p "$WORK"
: >"$LOG"
log "building influxd v$INFLUXDB_VERSION in $WORK (log: $LOG)"

run() {
    if ! "$@" >>"$LOG" 2>&1; then
        tail -n 60 "$LOG" >&2
        die "failed: $* (full log: $LOG; work dir kept: $WORK)"
    fi
}

export CGO_ENABLED=1
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

moddir() { # <module@version> -> Dir in the module cache (downloads it)
    local json dir
    json=$(go mod download -json "$1" 2>>"$LOG") || true
    dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")
    [[ -n $dir && -d $dir ]] || { printf '%s\n' "$json" >&2; die "go mod download $1 failed"; }
    printf '%s\n' "$dir"
}

log "fetching github.com/influxdata/influxdb/v2@v$INFLUXDB_VERSION from the Go module proxy"
src=$(cd "$WORK" && moddir "github.com/influxdata/influxdb/v2@v$INFLUXDB_VERSION")
cp -r "$src" "$WORK/influxdb"
chmod -R u+w "$WORK/influxdb"

cd "$WORK/influxdb"
flux_ver=$(go list -m -f '{{.Version}}' github.com/influxdata/flux)
log "fetching github.com/influxdata/flux@$flux_ver"
fluxsrc=$(moddir "github.com/influxdata/flux@$flux_ver")
cp -r "$fluxsrc" "$WORK/flux"
chmod -R u+w "$WORK/flux"
rm -f "$WORK/flux/rust-toolchain.toml" "$WORK/flux/rust-toolchain"

log "building libflux $flux_ver with cargo ($(cargo --version)); crates from crates.io"
t=$SECONDS
(
    cd "$WORK/flux/libflux"
    export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }--cap-lints warn"
    run cargo build --release --locked
)
libflux_s=$((SECONDS - t))
lib=$WORK/flux/libflux/target/release/libflux.a
[[ -f $lib ]] || die "cargo did not produce $lib"

# flux.pc as InfluxData's pkg-config wrapper would write it. The library name
# carries a content hash so Go's build cache never reuses a stale cgo link.
buildid=$(sha256sum "$lib" | cut -c1-16)
mkdir -p "$WORK/pkgconfig/lib"
cp "$lib" "$WORK/pkgconfig/lib/libflux-$buildid.a"
cat >"$WORK/pkgconfig/flux.pc" <<EOF
libdir=$WORK/pkgconfig/lib
includedir=$WORK/flux/libflux/include

Name: Flux
Version: ${flux_ver#v}
Description: Library for the InfluxData Flux engine
Libs: -L\${libdir} -lflux-$buildid -ldl -lm
Cflags: -I\${includedir}
EOF
rm -rf "$WORK/flux/libflux/target"   # ~600 MB of Rust intermediates
export PKG_CONFIG_PATH="$WORK/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"

log "building influxd with $(go version | cut -d' ' -f3) (tags: $GO_TAGS)"
t=$SECONDS
run go build -tags "$GO_TAGS" -trimpath \
    -ldflags "-s -w -X main.version=v$INFLUXDB_VERSION -X main.commit=upstream-v$INFLUXDB_VERSION -X main.date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    -o "$WORK/influxd" ./cmd/influxd
go_s=$((SECONDS - t))

"$WORK/influxd" version | grep -q "InfluxDB v$INFLUXDB_VERSION" || die "built binary does not report v$INFLUXDB_VERSION"
mv -f "$WORK/influxd" "$BIN.tmp"
mv -f "$BIN.tmp" "$BIN"
cat >"$DEST/BUILDINFO" <<EOF
influxdb=v$INFLUXDB_VERSION
flux=$flux_ver
go_tags=$GO_TAGS
go=$(go version)
cargo=$(cargo --version)
rustc=$(rustc --version 2>/dev/null || echo unknown)
rustflags=--cap-lints warn
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
libflux_seconds=$libflux_s
go_build_seconds=$go_s
total_seconds=$((SECONDS - start))
EOF
cd "$CACHE_ROOT"
rm -rf "$WORK"   # sources copies + pkgconfig; Go module cache and cargo registry are kept
log "done in $((SECONDS - start))s (libflux ${libflux_s}s, go build ${go_s}s): $BIN"
done_ok
