#!/usr/bin/env bash
# `make images`: the four images (ingest, transcribe, embed, onebox) built on a local base, for
# hosts that reach PyPI but no image registry. The base is Debian bookworm's minbase from
# debootstrap (run as root), imported as streamscribe-base-raw, plus python3, its venv module
# and the host's local CA certificates (Dockerfile.base) = streamscribe-base; each is made only
# when missing. BASE_IMAGE=python:3.11-slim builds on the public image instead (no debootstrap).
# torch (the embedding export stage) comes from download.pytorch.org; where that is unreachable,
# TORCH_WHEELS (default: pip's own find-links of the host, PIP_FIND_LINKS) is served on
# loopback for the build, with PyPI for torch's dependencies.
# The engine is the one DOCKER_HOST points at; builds use the host's network.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${BASE_IMAGE:=streamscribe-base}"
: "${TAG:=latest}"
: "${DEBIAN_MIRROR:=http://deb.debian.org/debian}"
: "${TORCH_WHEELS:=${PIP_FIND_LINKS:-}}"
# the classic builder needs no buildx plugin and pulls no frontend image from a registry
export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}"

cleanup=()
trap 'for c in "${cleanup[@]}"; do eval "$c"; done' EXIT
has_image() { docker image inspect "$1" >/dev/null 2>&1; }
fail() { echo "make images: $*" >&2; exit 2; }

command -v docker >/dev/null || fail "no docker command (apt-get install docker.io)"
docker info >/dev/null 2>&1 || fail "no container engine answers at ${DOCKER_HOST:-the default socket}"

if [ "$BASE_IMAGE" = streamscribe-base ] && ! has_image streamscribe-base; then
  if ! has_image streamscribe-base-raw; then
    command -v debootstrap >/dev/null && [ "$(id -u)" = 0 ] \
      || fail "the local base needs debootstrap, as root; or set BASE_IMAGE=python:3.11-slim"
    rootfs="$(mktemp -d)"
    cleanup+=("rm -rf '$rootfs'")
    debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >/dev/null
    tar -C "$rootfs" -c . | docker import - streamscribe-base-raw
  fi
  context="$(mktemp -d)"
  cleanup+=("rm -rf '$context'")
  mkdir "$context/extra-ca"
  cp /usr/local/share/ca-certificates/*.crt "$context/extra-ca/" 2>/dev/null || true
  docker build --network host -f deploy/docker/Dockerfile.base -t streamscribe-base "$context"
fi

torch_args=()
if ! python3 -c "import urllib.request as u; u.urlopen('https://download.pytorch.org/whl/cpu/', timeout=10)" 2>/dev/null; then
  if [ -z "$TORCH_WHEELS" ] || ! ls "$TORCH_WHEELS"/torch-2.13.0+cpu-*.whl >/dev/null 2>&1; then
    fail "download.pytorch.org is unreachable: set TORCH_WHEELS to a directory holding" \
      "torch-2.13.0+cpu's wheel"
  fi
  # the URL is a build argument, so part of the export layer's cache key: the same port each
  # time (a free one when it is taken) keeps that layer cached between builds
  port="$(python3 -c '
import socket
s = socket.socket()
try:
    s.bind(("127.0.0.1", 18731))
except OSError:
    s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')"
  python3 -m http.server --bind 127.0.0.1 --directory "$TORCH_WHEELS" "$port" >/dev/null 2>&1 &
  cleanup+=("kill $!")
  torch_args=(--build-arg "TORCH_FIND_LINKS=http://127.0.0.1:$port/"
    --build-arg "TORCH_INDEX_URL=https://pypi.org/simple")
fi

for image in ingest transcribe embed onebox; do
  name="streamscribe-$image"
  [ "$image" = onebox ] && name=streamscribe
  echo "building $name:$TAG on $BASE_IMAGE"
  docker build --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" "${torch_args[@]}" \
    -f "deploy/docker/Dockerfile.$image" -t "$name:$TAG" .
done
