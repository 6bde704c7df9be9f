#!/usr/bin/env bash
# Builds the `tally` Docker image from this checkout: `bash docker/build-image.sh [TAG]` (default tag: tally).
#
# No base image can be pulled here, so the image is `FROM scratch` with the release binary (debug info
# stripped) and exactly the shared libraries `ldd` says it needs, at the paths the dynamic loader expects.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-tally}"

cargo build --release -p tally-cli
binary=target/release/tally

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/rootfs/data" "$stage/rootfs/tmp"
objcopy --strip-debug "$binary" "$stage/rootfs/tally"
# Every library ldd resolves (`name => /path (addr)`), plus the loader itself (`/path (addr)`).
ldd "$binary" | awk '/=> \// { print $3 } /^[[:space:]]*\/[^ ]+ \(/ { print $1 }' | while read -r library; do
    mkdir -p "$stage/rootfs$(dirname "$library")"
    cp -L "$library" "$stage/rootfs$library"
done
cp docker/Dockerfile "$stage/Dockerfile"

docker build --quiet --tag "$tag" "$stage" >/dev/null
size=$(docker image inspect --format '{{.Size}}' "$tag")
echo "built image $tag: $((size / 1024 / 1024)) MiB"
