#!/usr/bin/env bash
# Reproduces the vendored front-end assets in api/pages/vendor/ from the npm registry.
#
# linemon serves its dashboards with no build step and no CDN (plants are often offline),
# so the one library they use, Chart.js, is committed as its minified UMD file plus its
# licence. This script fetches the pinned version with `npm pack` (npm checks the tarball
# against the registry's integrity hash), checks each file against the SHA-256 pinned
# here, and copies it in. A different digest stops the script: nothing is overwritten.
#
#   bash deploy/vendor-assets.sh           # fetch, check, copy into api/pages/vendor/
#   bash deploy/vendor-assets.sh --check   # fetch, check, and compare with the committed copy
#
# To upgrade: change CHARTJS_VERSION, run with UPDATE_DIGESTS=1 to print the new digests,
# read the release notes, paste the digests here, run again, look at the dashboards.
set -euo pipefail
cd "$(dirname "$0")/.."

CHARTJS_VERSION=4.6.1
CHARTJS_SHA256=87364cc2b2a76a6684929e7d6b80b18a897794db38400caff1fcf1791c6925d2
LICENSE_SHA256=41a84aa2caba645f966a18d9c2056b73e6d3a81d80bc0046bc0011a2634d4cce
DEST=api/pages/vendor

command -v npm >/dev/null || { echo "npm is needed (Debian: apt-get install npm)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "chart.js@${CHARTJS_VERSION}" >/dev/null)
tar -xzf "$work/chart.js-${CHARTJS_VERSION}.tgz" -C "$work"

# source file in the package | file in $DEST | pinned digest
files=(
    "package/dist/chart.umd.min.js|chart.umd.min.js|$CHARTJS_SHA256"
    "package/LICENSE.md|chart.js-LICENSE.txt|$LICENSE_SHA256"
)
status=0
for entry in "${files[@]}"; do
    IFS='|' read -r src name want <<<"$entry"
    got=$(sha256sum "$work/$src" | cut -d' ' -f1)
    if [ -n "${UPDATE_DIGESTS:-}" ]; then
        echo "$name $got"
        continue
    fi
    if [ "$got" != "$want" ]; then
        echo "chart.js@${CHARTJS_VERSION} $src: sha256 $got, pinned $want; not copying" >&2
        exit 1
    fi
    if [ "${1:-}" = "--check" ]; then
        if ! cmp -s "$work/$src" "$DEST/$name"; then
            echo "$DEST/$name differs from chart.js@${CHARTJS_VERSION} $src" >&2
            status=1
        fi
    else
        install -m 0644 "$work/$src" "$DEST/$name"
    fi
done
[ -n "${UPDATE_DIGESTS:-}" ] && exit 0
if [ "${1:-}" = "--check" ]; then
    [ $status -eq 0 ] && echo "$DEST matches chart.js@${CHARTJS_VERSION}"
    exit $status
fi
echo "chart.js@${CHARTJS_VERSION} -> $DEST (sha256 checked)"
