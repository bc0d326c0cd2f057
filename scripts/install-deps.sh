#!/usr/bin/env bash
# Installs what Ingot needs at run time on Debian 12 (run as root):
# runc for containers, iproute2 and nftables for their network, the
# python3 the default stack offers to apps (with venv and pip), OpenSSH's
# client (`ingot ssh`) and sftp-server (scp and sftp into instances).
# With --tests, also what the test suite drives: sshpass, and a real OCI
# registry with skopeo, htpasswd and busybox for the image tests, a real
# PostgreSQL (the built-in broker's tests start their own server), and tmux
# (the CLI is driven in it as a person would).
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
command -v ssh >/dev/null || need+=(openssh-client)
[ -x /usr/lib/openssh/sftp-server ] || need+=(openssh-sftp-server)
if [ "${1:-}" = "--tests" ]; then
  command -v sshpass >/dev/null || need+=(sshpass)
  command -v docker-registry >/dev/null || need+=(docker-registry)
  command -v skopeo >/dev/null || need+=(skopeo)
  command -v htpasswd >/dev/null || need+=(apache2-utils)
  [ -x /bin/busybox ] || need+=(busybox-static)
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
  command -v tmux >/dev/null || need+=(tmux)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
