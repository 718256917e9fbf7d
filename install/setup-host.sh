#!/usr/bin/env bash
# Idempotent host setup for development, tests and CI (Debian 12, as root): the installer's own
# host setup (one source of truth), what the tests add (shared/HOST.md), and the local test images
# localhost/busybox:test and localhost/hello-web:test. Safe to run any number of times.
set -euo pipefail

# What the agent drives comes from the installer's host setup (install/install.sh --host-only: Podman,
# its runtime, network backend and containers.conf, dnsmasq, WireGuard, git); here only what the
# development and the tests add: Caddy (tests start their own), the full dnsmasq and dig, wireguard-go
# (tests use it even where the kernel has WireGuard), netavark beside CNI (tests run the agent on both
# backends), a registry, buildah, skopeo, busybox for test images, shellcheck, GNU time (benchmarks),
# tmux (the doctor screen's terminal tests).
EXTRA_PACKAGES=(caddy dnsmasq dnsutils wireguard-go docker-registry buildah skopeo busybox-static iputils-ping openssl
                containernetworking-plugins netavark aardvark-dns shellcheck debootstrap time tmux)
TEST_IMAGE=localhost/busybox:test
# A web server image for the example and the reconcile tests (expected state carries no command).
# sh traps SIGTERM so `podman stop` is immediate (httpd as PID 1 ignores it).
WEB_IMAGE=localhost/hello-web:test

say() { printf '[setup-host] %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  say "must run as root (it installs packages and configures podman)"; exit 2
fi

# npm runs `npm ci` (which brings Bun). A fresh Debian 12 has no Node: then take Debian's own
# nodejs and npm; a Node that is already installed (nodesource, nvm, ...) is left alone.
if ! command -v npm >/dev/null 2>&1; then
  say "npm not on PATH: adding Debian's nodejs and npm packages (for npm ci)"
  EXTRA_PACKAGES+=(nodejs npm)
fi

bash "$(dirname "$0")/install.sh" --host-only --extra-packages "${EXTRA_PACKAGES[*]}" >&2

# Debian starts these as services when systemd is PID 1; the agent and the tests run their own.
for svc in caddy dnsmasq docker-registry; do
  if [ -d /run/systemd/system ]; then systemctl disable --now "$svc" >/dev/null 2>&1 || true; fi
done

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
