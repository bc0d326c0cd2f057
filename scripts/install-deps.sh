#!/usr/bin/env bash
# Installs what Ingot needs at run time on Debian 12 (run as root):
# runc for containers, iproute2 and nftables for their network, and the
# python3 the default stack offers to apps (with venv and pip).
set -euo pipefail
need=()
command -v runc >/dev/null || need+=(runc)
command -v ip >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
[ -x /usr/bin/python3 ] || need+=(python3)
/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
/usr/bin/python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
[ -f /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
command -v cc >/dev/null || need+=(gcc)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
