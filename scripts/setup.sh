#!/usr/bin/env bash
# Installs what kbisect needs on a Debian 12 machine: idempotent, and quick
# when everything is already there (no apt-get update then).
set -euo pipefail

packages=(
  qemu-system-x86 linux-image-amd64 linux-source-6.1
  nftables tshark iproute2 kmod cpio xz-utils ccache git jq
  build-essential bc flex bison libelf-dev libssl-dev
  # --hypervisor xen: the nested Xen host's hypervisor and toolstack.
  xen-hypervisor-4.17-amd64 xen-utils-4.17 xenstore-utils
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
go mod download
