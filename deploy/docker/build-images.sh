#!/usr/bin/env bash
# `make images`: the four images (ingest, transcribe, embed, onebox) built on a local base, for
# hosts that reach PyPI but no image registry. The base is Debian bookworm's minbase from
# debootstrap (run as root), imported as streamscribe-base-raw, plus python3 and its venv module
# (Dockerfile.base, with the host's local CA certificates) = streamscribe-base. Either base image is made only when missing.
# BASE_IMAGE=python:3.11-slim builds on the public image instead (no debootstrap).
# The engine is the one DOCKER_HOST points at; builds use the host's network.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${BASE_IMAGE:=streamscribe-base}"
: "${TAG:=latest}"
: "${DEBIAN_MIRROR:=http://deb.debian.org/debian}"
# the classic builder needs no buildx plugin and pulls no frontend image from a registry
export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}"

has_image() { docker image inspect "$1" >/dev/null 2>&1; }

if [ "$BASE_IMAGE" = streamscribe-base ] && ! has_image streamscribe-base; then
  if ! has_image streamscribe-base-raw; then
    rootfs="$(mktemp -d)"
    debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >/dev/null
    tar -C "$rootfs" -c . | docker import - streamscribe-base-raw
    rm -rf "$rootfs"
  fi
  context="$(mktemp -d)"
  mkdir "$context/extra-ca"
  cp /usr/local/share/ca-certificates/*.crt "$context/extra-ca/" 2>/dev/null || true
  docker build --network host -f deploy/docker/Dockerfile.base -t streamscribe-base "$context"
  rm -rf "$context"
fi

for image in ingest transcribe embed onebox; do
  name="streamscribe-$image"
  [ "$image" = onebox ] && name=streamscribe
  echo "building $name:$TAG on $BASE_IMAGE"
  docker build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    -f "deploy/docker/Dockerfile.$image" -t "$name:$TAG" .
done
