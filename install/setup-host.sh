#!/usr/bin/env bash
# Idempotent host setup for development, tests and CI (Debian 12, as root).
# Installs the real components the agent drives and its tests start (shared/HOST.md), configures
# Podman for this kind of host (runc, ulimits within the hard limits), and creates the local test
# image localhost/busybox:test. Safe to run any number of times.
set -euo pipefail

# containernetworking-plugins: Podman's CNI backend. Named, since podman depends only on "a
# container-network-stack", which netavark alone satisfies when both are installed together.
PACKAGES=(podman runc containernetworking-plugins caddy dnsmasq dnsutils wireguard-tools wireguard-go iproute2 docker-registry
          buildah skopeo busybox-static git curl ca-certificates iptables iputils-ping openssl
          netavark aardvark-dns)
TEST_IMAGE=localhost/busybox:test
# A web server image for the example and the reconcile tests (expected state carries no command).
# sh traps SIGTERM so `podman stop` is immediate (httpd as PID 1 ignores it).
WEB_IMAGE=localhost/hello-web:test
MARKER="# managed by techulus-agent install/setup-host.sh"

say() { printf '[setup-host] %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  say "must run as root (it installs packages and configures podman)"; exit 2
fi

# npm runs `npm ci` (which brings Bun). A fresh Debian 12 has no Node: then take Debian's own
# nodejs and npm; a Node that is already installed (nodesource, nvm, ...) is left alone.
if ! command -v npm >/dev/null 2>&1; then
  say "npm not on PATH: adding Debian's nodejs and npm packages (for npm ci)"
  PACKAGES+=(nodejs npm)
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "packages already installed"
fi

# Debian starts these as services when systemd is PID 1; the agent and the tests run their own.
for svc in caddy dnsmasq docker-registry; do
  if [ -d /run/systemd/system ]; then systemctl disable --now "$svc" >/dev/null 2>&1 || true; fi
done

conf=/etc/containers/containers.conf
# Podman's network backend, said explicitly: with netavark installed (the tests also run the agent
# on it, in worlds of their own), podman would otherwise switch to it by itself on a fresh host.
# PODMAN_NETWORK_BACKEND chooses; else the one already pinned here, else what this podman uses now
# (an older setup without a pin), else CNI: Debian 12's default, what its servers run.
backend=${PODMAN_NETWORK_BACKEND:-}
[ -n "$backend" ] || backend=$(sed -n 's/^network_backend = "\(.*\)"$/\1/p' "$conf" 2>/dev/null || true)
if [ -z "$backend" ] && [ -f "$conf" ]; then backend=$(podman info --format '{{.Host.NetworkBackend}}' 2>/dev/null || true); fi
backend=${backend:-cni}
case "$backend" in cni|netavark) ;; *) say "PODMAN_NETWORK_BACKEND must be cni or netavark (got $backend)"; exit 2 ;; esac
if [ ! -f "$conf" ] || grep -q "$MARKER" "$conf"; then
  nofile_hard=$(ulimit -Hn)
  limit=10000
  if [ "$nofile_hard" != "unlimited" ] && [ "$nofile_hard" -lt "$limit" ]; then limit=$nofile_hard; fi
  desired=$(cat <<CONF
$MARKER
# runc: crun fails on cgroups v1 hybrid hosts; ulimits must stay within the hard limits.
[containers]
default_ulimits = ["nofile=$limit:$limit","nproc=$limit:$limit"]

[engine]
runtime = "runc"

[network]
network_backend = "$backend"
CONF
)
  if [ "$(cat "$conf" 2>/dev/null)" != "$desired" ]; then
    say "writing $conf"
    mkdir -p /etc/containers
    printf '%s\n' "$desired" > "$conf"
  fi
else
  say "$conf exists and is not ours; leaving it (it needs runtime = \"runc\" and default_ulimits within the hard limits)"
fi

if ! podman image exists "$TEST_IMAGE" 2>/dev/null; then
  say "creating $TEST_IMAGE from busybox-static"
  root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/var/www"
  cp /bin/busybox "$root/bin/busybox"
  for tool in sh sleep httpd wget cat echo ls nc ping nslookup env kill ps mkdir rm true false id hostname; do
    ln -sf busybox "$root/bin/$tool"
  done
  echo "root:x:0:0:root:/root:/bin/sh" > "$root/etc/passwd"
  echo "root:x:0:" > "$root/etc/group"
  tar -C "$root" -cf "$root.tar" .
  podman import --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' "$root.tar" "$TEST_IMAGE" >/dev/null
  rm -rf "$root" "$root.tar"
fi
if ! podman image exists "$WEB_IMAGE" 2>/dev/null; then
  say "creating $WEB_IMAGE (busybox httpd on :8080)"
  web=$(mktemp -d)
  mkdir -p "$web/bin" "$web/var/www" "$web/etc" "$web/tmp"
  cp /bin/busybox "$web/bin/busybox"
  for tool in sh sleep httpd wget cat echo ls nc nslookup env kill ps true; do ln -sf busybox "$web/bin/$tool"; done
  echo "root:x:0:0:root:/root:/bin/sh" > "$web/etc/passwd"
  echo "root:x:0:" > "$web/etc/group"
  echo "hello from a techulus-agent container" > "$web/var/www/index.html"
  tar -C "$web" -cf "$web.tar" .
  podman import --change 'CMD ["/bin/sh","-c","trap \"exit 0\" TERM INT; httpd -f -p 8080 -h /var/www & wait"]' --change 'ENV PATH=/bin' \
    --change 'EXPOSE 8080' "$web.tar" "$WEB_IMAGE" >/dev/null
  rm -rf "$web" "$web.tar"
fi
say "host ready ($(podman --version), network backend $(podman info --format '{{.Host.NetworkBackend}}'), $(caddy version 2>/dev/null | cut -d' ' -f1), dnsmasq $(dnsmasq --version | head -1 | awk '{print $3}'))"
