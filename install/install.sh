#!/usr/bin/env bash
# Installs the Techulus node agent on a server (Debian 12, Ubuntu 22.04 or 24.04; x86_64 or
# aarch64), as root:
#
#   curl -fsSL https://control-plane.example/install.sh | sudo CONTROL_PLANE_URL=… REGISTRATION_TOKEN=… AGENT_DOWNLOAD_URL=… bash
#
# Run it again to upgrade in place. Everything is in README.md, "Install on a server"; `--help`
# lists the variables and flags. Exit codes: 0 done, 1 a step failed, 2 bad input.
# The whole script is read before anything runs (main at the bottom), so a cut-off download
# cannot run half a script.
set -euo pipefail

BIN=/usr/local/bin/agent
PREVIOUS_BIN=/usr/local/bin/agent.previous
CONFIG_DIR=/etc/techulus-agent
CONFIG_FILE=$CONFIG_DIR/agent.json
DEFAULT_DATA_DIR=/var/lib/techulus-agent
DEFAULT_DNS_RUN_DIR=/run/techulus-agent/dnsmasq
UNIT_NAME=techulus-agent.service
UNIT_FILE=/etc/systemd/system/$UNIT_NAME
CONTAINERS_CONF=/etc/containers/containers.conf
CONF_MARKER="# managed by techulus-agent"
MANAGED_LABEL=techulus.service.id
REGISTER_TIMEOUT_SECONDS=90
# The agent's own stop grace is 30 s (README, "Stopping the agent"); systemd waits a bit longer.
STOP_TIMEOUT_SECONDS=45

say() { printf '[techulus-agent] %s\n' "$*"; }
fail() { printf '[techulus-agent] error: %s\n' "$*" >&2; exit 1; }
usage_error() { printf '[techulus-agent] %s\n(run with --help for usage)\n' "$*" >&2; exit 2; }

usage() {
  cat <<'USAGE'
Techulus agent installer. As root:  curl -fsSL URL/install.sh | sudo bash   or   bash install.sh [flags]

Settings (environment variable, or flag when run as a file):
  CONTROL_PLANE_URL      --url URL             control plane base URL (first install)
  REGISTRATION_TOKEN     --token TOKEN         one-time registration token (first install)
  AGENT_DOWNLOAD_URL     --download-url URL    folder holding VERSION and agent-linux-<arch>[.gz|.sha256]
  AGENT_VERSION          --version VERSION     refuse anything else (default: the VERSION file there)
  IS_PROXY               --proxy | --no-proxy  true/false: a proxy node (installs Caddy)
  PROXY_DRIVER           --proxy-driver NAME   caddy, traefik or auto
  LOGS_ENDPOINT          --logs-endpoint URL   VictoriaLogs base URL
  INSECURE_REGISTRIES    --insecure-registries host:port,…  registries pulled without TLS verification

Actions:
  (none)                 install, or upgrade in place when already installed
  --dry-run              print every step without doing it
  --uninstall            stop and remove the service and the binary; keep data, settings and containers
  --purge                --uninstall, then remove the managed containers, the data and the settings
  --yes                  do not ask before --purge
  --host-only            only the host setup (packages, Podman tuning), as install/setup-host.sh uses it
  --extra-packages "A B" with --host-only: more apt packages in the same install (install/setup-host.sh's)
  -h, --help             this text
Exit codes: 0 done, 1 a step failed, 2 bad input.
USAGE
}

# ---------------------------------------------------------------- input

parse_args() {
  ACTION=install DRY_RUN=false ASSUME_YES=false EXTRA_PACKAGES=""
  local args=() arg
  # --name=value is the same as --name value.
  for arg in "$@"; do
    case $arg in --*=*) args+=("${arg%%=*}" "${arg#*=}") ;; *) args+=("$arg") ;; esac
  done
  set -- ${args[@]+"${args[@]}"}
  while [ $# -gt 0 ]; do
    case $1 in
      --url) need_value "$@"; CONTROL_PLANE_URL=$2; shift 2 ;;
      --token) need_value "$@"; REGISTRATION_TOKEN=$2; shift 2 ;;
      --download-url) need_value "$@"; AGENT_DOWNLOAD_URL=$2; shift 2 ;;
      --version) need_value "$@"; AGENT_VERSION=$2; shift 2 ;;
      --proxy) IS_PROXY=true; shift ;;
      --no-proxy) IS_PROXY=false; shift ;;
      --proxy-driver) need_value "$@"; PROXY_DRIVER=$2; shift 2 ;;
      --logs-endpoint) need_value "$@"; LOGS_ENDPOINT=$2; shift 2 ;;
      --insecure-registries) need_value "$@"; INSECURE_REGISTRIES=$2; shift 2 ;;
      --extra-packages) need_value "$@"; EXTRA_PACKAGES=$2; shift 2 ;;
      --dry-run) DRY_RUN=true; shift ;;
      --yes|-y) ASSUME_YES=true; shift ;;
      --uninstall) set_action uninstall; shift ;;
      --purge) set_action purge; shift ;;
      --host-only) set_action host-only; shift ;;
      -h|--help) usage; exit 0 ;;
      *) usage_error "unknown argument: $1" ;;
    esac
  done
}

need_value() { [ $# -ge 2 ] || usage_error "$1 needs a value"; }

set_action() {
  [ "$ACTION" = install ] || [ "$ACTION" = "$1" ] || usage_error "--$ACTION and --$1 cannot be combined"
  ACTION=$1
}

# Prompts on the terminal for a missing value (stdin is the script under curl | bash).
# ask VAR "question" [secret]
ask() {
  local var=$1 question=$2 secret=${3:-} answer=""
  if ! { true </dev/tty; } 2>/dev/null; then return 1; fi
  if [ -n "$secret" ]; then
    read -r -s -p "$question: " answer </dev/tty >/dev/tty 2>&1; printf '\n' >/dev/tty
  else
    read -r -p "$question: " answer </dev/tty >/dev/tty 2>&1
  fi
  printf -v "$var" '%s' "$answer"
}

# require VAR flag "question" [secret]: asks on a terminal, else says how to give it.
require() {
  local var=$1 flag=$2 question=$3 secret=${4:-}
  if [ -z "${!var:-}" ]; then ask "$var" "$question" "$secret" || true; fi
  [ -n "${!var:-}" ] || usage_error "$var is not set: export $var=… or pass $flag (no terminal to ask on)"
}

is_http_url() { [[ $1 =~ ^https?://[^[:space:]/]+[^[:space:]]*$ ]]; }

validate_inputs() {
  if [ -n "${CONTROL_PLANE_URL:-}" ]; then is_http_url "$CONTROL_PLANE_URL" || usage_error "CONTROL_PLANE_URL (--url) must be an http:// or https:// URL (got \"$CONTROL_PLANE_URL\")"; fi
  if [ -n "${REGISTRATION_TOKEN:-}" ] && [[ $REGISTRATION_TOKEN =~ [[:space:]] ]]; then usage_error "REGISTRATION_TOKEN (--token) must not contain spaces"; fi
  if [ -n "${AGENT_DOWNLOAD_URL:-}" ]; then
    is_http_url "$AGENT_DOWNLOAD_URL" || [[ $AGENT_DOWNLOAD_URL =~ ^file:///[^[:space:]]*$ ]] ||
      usage_error "AGENT_DOWNLOAD_URL (--download-url) must be an http://, https:// or file:// URL (got \"$AGENT_DOWNLOAD_URL\")"
    AGENT_DOWNLOAD_URL=${AGENT_DOWNLOAD_URL%/}
  fi
  if [ -n "${AGENT_VERSION:-}" ]; then
    AGENT_VERSION=${AGENT_VERSION#v}
    [[ $AGENT_VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]] || usage_error "AGENT_VERSION (--version) must look like 1.2.3 (got \"$AGENT_VERSION\")"
  fi
  case ${IS_PROXY:-} in ""|true|false) ;; *) usage_error "IS_PROXY must be true or false (got \"$IS_PROXY\")" ;; esac
  case ${PROXY_DRIVER:-} in ""|caddy|traefik|auto) ;; *) usage_error "PROXY_DRIVER (--proxy-driver) must be caddy, traefik or auto (got \"$PROXY_DRIVER\")" ;; esac
  if [ -n "${LOGS_ENDPOINT:-}" ]; then is_http_url "$LOGS_ENDPOINT" || usage_error "LOGS_ENDPOINT (--logs-endpoint) must be an http:// or https:// URL (got \"$LOGS_ENDPOINT\")"; fi
  if [ -n "${INSECURE_REGISTRIES:-}" ]; then
    local entry
    for entry in ${INSECURE_REGISTRIES//,/ }; do
      [[ $entry =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$ ]] || usage_error "INSECURE_REGISTRIES (--insecure-registries) must be a comma-separated list of host or host:port (got \"$entry\")"
    done
  fi
}

# ---------------------------------------------------------------- host

os_release_field() { sed -n "s/^$1=//p" /etc/os-release 2>/dev/null | head -n 1 | tr -d "\"'"; }

detect_host() {
  [ "$(id -u)" -eq 0 ] || usage_error "must run as root: curl -fsSL URL/install.sh | sudo bash"
  local id version pretty
  id=$(os_release_field ID); version=$(os_release_field VERSION_ID); pretty=$(os_release_field PRETTY_NAME)
  case "$id $version" in
    "debian 12"|"ubuntu 22.04"|"ubuntu 24.04") OS="$id $version" ;;
    *) fail "unsupported OS: ${pretty:-unknown (no /etc/os-release)}; supported: Debian 12, Ubuntu 22.04, Ubuntu 24.04" ;;
  esac
  case $(uname -m) in
    x86_64|amd64) ARCH=x64 ;;
    aarch64|arm64) ARCH=arm64 ;;
    *) fail "unsupported architecture: $(uname -m); supported: x86_64, aarch64" ;;
  esac
  if [ -d /run/systemd/system ]; then SYSTEMD=true; else SYSTEMD=false; fi
}

# Podman's network backend: PODMAN_NETWORK_BACKEND, else the one already pinned, else the
# release's default (CNI on Debian 12 and Ubuntu 22.04, netavark on Ubuntu 24.04).
network_backend() {
  local backend=${PODMAN_NETWORK_BACKEND:-}
  [ -n "$backend" ] || backend=$(sed -n 's/^network_backend = "\(.*\)"$/\1/p' "$CONTAINERS_CONF" 2>/dev/null || true)
  if [ -z "$backend" ]; then
    case $OS in "ubuntu 24.04") backend=netavark ;; *) backend=cni ;; esac
  fi
  case $backend in cni|netavark) printf '%s' "$backend" ;; *) usage_error "PODMAN_NETWORK_BACKEND must be cni or netavark (got $backend)" ;; esac
}

# crun, Podman's default, fails on cgroups v1 (hybrid) hosts; runc works there.
container_runtime() {
  if [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" = cgroup2fs ]; then printf crun; else printf runc; fi
}

kernel_has_wireguard() {
  [ -d /sys/module/wireguard ] || { modprobe -q wireguard 2>/dev/null && [ -d /sys/module/wireguard ]; }
}

# What the agent drives: Podman, its runtime and network backend, dnsmasq (the binary: the agent
# runs its own) and dig (agent doctor asks internal DNS with it), WireGuard, git; Caddy on Caddy
# proxy nodes; what this script itself uses.
host_packages() {
  local backend=$1 runtime=$2
  local packages=(podman "$runtime" iptables iproute2 dnsmasq-base dnsutils wireguard-tools git ca-certificates curl jq gzip)
  if [ "$backend" = cni ]; then packages+=(containernetworking-plugins); else packages+=(netavark aardvark-dns); fi
  kernel_has_wireguard || packages+=(wireguard-go)
  if [ "${IS_PROXY:-false}" = true ] && [ "${PROXY_DRIVER:-auto}" != traefik ]; then packages+=(caddy); fi
  if [ -n "$EXTRA_PACKAGES" ]; then
    local extra
    read -r -a extra <<<"$EXTRA_PACKAGES"
    packages+=("${extra[@]}")
  fi
  printf '%s\n' "${packages[@]}"
}

apt_install() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then say "  packages already installed"; return 0; fi
  if $DRY_RUN; then say "  would apt-get install: ${missing[*]}"; return 0; fi
  say "  apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  local log
  log=$(mktemp)
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2; rm -f "$log"
    fail "apt-get install failed (above: its last lines)"
  fi
  rm -f "$log"
}

containers_conf() {
  local backend=$1 runtime=$2 limit=10000 hard
  hard=$(ulimit -Hn)
  if [ "$hard" != unlimited ] && [ "$hard" -lt "$limit" ]; then limit=$hard; fi
  printf '%s install.sh\n' "$CONF_MARKER"
  printf '# ulimits within the hard limits of this host; the runtime that works here.\n[containers]\n'
  printf 'default_ulimits = ["nofile=%s:%s","nproc=%s:%s"]\n\n' "$limit" "$limit" "$limit" "$limit"
  printf '[engine]\nruntime = "%s"\n\n[network]\nnetwork_backend = "%s"\n' "$runtime" "$backend"
}

setup_host() {
  local backend runtime packages
  backend=$(network_backend); runtime=$(container_runtime)
  say "host: $OS $ARCH, Podman network backend $backend, runtime $runtime"
  mapfile -t packages < <(host_packages "$backend" "$runtime")
  apt_install "${packages[@]}"

  if [ ! -f "$CONTAINERS_CONF" ] || grep -q "^$CONF_MARKER" "$CONTAINERS_CONF"; then
    local desired
    desired=$(containers_conf "$backend" "$runtime")
    if [ "$(cat "$CONTAINERS_CONF" 2>/dev/null)" != "$desired" ]; then
      if $DRY_RUN; then say "  would write $CONTAINERS_CONF"; else
        say "  writing $CONTAINERS_CONF"
        mkdir -p "$(dirname "$CONTAINERS_CONF")"
        printf '%s\n' "$desired" >"$CONTAINERS_CONF.tmp" && mv -f "$CONTAINERS_CONF.tmp" "$CONTAINERS_CONF"
      fi
    fi
  else
    say "  $CONTAINERS_CONF is not ours: leaving it (it needs runtime = \"$runtime\" and default_ulimits within the hard limits)"
  fi

  if $SYSTEMD; then
    systemctl_do enable --now podman.socket
    if [ "${IS_PROXY:-false}" = true ] && [ "${PROXY_DRIVER:-auto}" != traefik ]; then systemctl_do enable --now caddy.service; fi
  fi
  if [ "${IS_PROXY:-false}" = true ] && [ "${PROXY_DRIVER:-auto}" = traefik ] && ! command -v traefik >/dev/null 2>&1; then
    say "  Traefik is not a Debian/Ubuntu package: install it yourself with its file provider watching /etc/traefik/dynamic"
  fi
}

systemctl_do() {
  if $DRY_RUN; then say "  would run: systemctl $*"; return 0; fi
  systemctl "$@" >/dev/null 2>&1 || fail "systemctl $* failed: $(systemctl "$@" 2>&1 | tail -n 3)"
}

# ---------------------------------------------------------------- release

fetch() { curl -fsSL --retry 3 --connect-timeout 15 -o "$2" "$1"; }

# Downloads and verifies the release binary into $WORK/agent; sets RELEASE_VERSION.
download_release() {
  local base=$AGENT_DOWNLOAD_URL file=agent-linux-$ARCH
  if $DRY_RUN; then
    say "  would download $base/VERSION, $base/$file.gz (or $file) and $base/$file.sha256, verify the SHA-256 and the version"
    RELEASE_VERSION=${AGENT_VERSION:-"(from $base/VERSION)"}
    return 0
  fi
  fetch "$base/VERSION" "$WORK/VERSION" || fail "cannot download $base/VERSION (AGENT_DOWNLOAD_URL)"
  RELEASE_VERSION=$(tr -d '[:space:]' <"$WORK/VERSION")
  [[ $RELEASE_VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]] || fail "$base/VERSION does not hold a version (got \"$RELEASE_VERSION\")"
  if [ -n "${AGENT_VERSION:-}" ] && [ "$AGENT_VERSION" != "$RELEASE_VERSION" ]; then
    fail "$base holds version $RELEASE_VERSION, not the requested AGENT_VERSION $AGENT_VERSION; nothing was changed"
  fi
  fetch "$base/$file.sha256" "$WORK/sha256" || fail "cannot download $base/$file.sha256"
  local expected actual
  expected=$(awk '{print $1; exit}' "$WORK/sha256")
  [[ $expected =~ ^[0-9a-f]{64}$ ]] || fail "$base/$file.sha256 does not hold a SHA-256"
  if fetch "$base/$file.gz" "$WORK/agent.gz"; then
    gzip -dc "$WORK/agent.gz" >"$WORK/agent" || fail "$base/$file.gz is not a gzip file"
    rm -f "$WORK/agent.gz"
  else
    fetch "$base/$file" "$WORK/agent" || fail "cannot download $base/$file(.gz)"
  fi
  actual=$(sha256sum "$WORK/agent" | awk '{print $1}')
  [ "$actual" = "$expected" ] || fail "SHA-256 mismatch for $file: published $expected, downloaded $actual; refusing it, nothing was changed"
  chmod 0755 "$WORK/agent"
  local reported
  reported=$("$WORK/agent" --version 2>/dev/null | awk '{print $1}') || true
  [ "$reported" = "$RELEASE_VERSION" ] || fail "the downloaded agent says version \"$reported\", VERSION says $RELEASE_VERSION; refusing it, nothing was changed"
  say "  $file $RELEASE_VERSION verified (sha256 $expected)"
}

install_binary() {
  if [ -x "$BIN" ] && cmp -s "$BIN" "$WORK/agent"; then say "  $BIN is already this build"; return 0; fi
  if $DRY_RUN; then say "  would install $BIN$([ -x "$BIN" ] && printf ' (keeping the current one as %s)' "$PREVIOUS_BIN")"; return 0; fi
  mkdir -p "$(dirname "$BIN")"
  if [ -x "$BIN" ]; then cp -p "$BIN" "$PREVIOUS_BIN.tmp" && mv -f "$PREVIOUS_BIN.tmp" "$PREVIOUS_BIN"; fi
  # A rename in the same folder: the old binary or the new one, never half of one.
  cp "$WORK/agent" "$BIN.tmp" && chmod 0755 "$BIN.tmp" && mv -f "$BIN.tmp" "$BIN"
  say "  installed $BIN ($("$BIN" --version))"
}

# ---------------------------------------------------------------- settings

config_value() { # key → the value in agent.json, empty when absent (or no jq yet)
  [ -f "$CONFIG_FILE" ] && command -v jq >/dev/null 2>&1 || return 0
  jq -r --arg k "$1" '.[$k] // empty | if type == "array" then join(",") else tostring end' "$CONFIG_FILE" 2>/dev/null || true
}

data_dir() { local d; d=$(config_value dataDir); printf '%s' "${d:-$DEFAULT_DATA_DIR}"; }

is_registered() { [ -f "$(data_dir)/config.json" ]; }

# The settings file after this run: the existing one with the keys given now replaced. Written to
# $WORK/agent.json (checked before anything changes), installed by write_settings.
# shellcheck disable=SC2016 # $names in the jq filter are jq's own variables
prepare_settings() {
  local filter='.' args=()
  if [ -f "$CONFIG_FILE" ]; then
    jq -e 'type == "object"' "$CONFIG_FILE" >/dev/null 2>&1 || fail "$CONFIG_FILE is not a JSON object: fix it or remove it, then run the installer again"
  fi
  set_string() { [ -z "$2" ] || { args+=(--arg "$1" "$2"); filter+=" | .$1 = \$$1"; }; }
  set_string url "${CONTROL_PLANE_URL:-}"
  is_registered || set_string token "${REGISTRATION_TOKEN:-}"
  set_string proxyDriver "${PROXY_DRIVER:-}"
  set_string logsEndpoint "${LOGS_ENDPOINT:-}"
  if [ -n "${IS_PROXY:-}" ]; then args+=(--argjson proxy "$IS_PROXY"); filter+=' | .proxy = $proxy'; fi
  if [ -n "${INSECURE_REGISTRIES:-}" ]; then
    args+=(--arg insecureRegistries "$INSECURE_REGISTRIES")
    filter+=' | .insecureRegistries = ($insecureRegistries | split(",") | map(gsub("^\\s+|\\s+$"; "")) | map(select(length > 0)))'
  fi
  if [ -f "$CONFIG_FILE" ]; then jq "${args[@]}" "$filter" "$CONFIG_FILE"; else jq -n "${args[@]}" "$filter | ."; fi >"$WORK/agent.json" ||
    fail "cannot compose $CONFIG_FILE"
}

write_settings() {
  if $DRY_RUN; then say "  would write $CONFIG_FILE (mode 0600) with: $(settings_keys_given)"; return 0; fi
  if [ -f "$CONFIG_FILE" ] && cmp -s "$CONFIG_FILE" "$WORK/agent.json"; then say "  $CONFIG_FILE unchanged"; chmod 0600 "$CONFIG_FILE"; return 0; fi
  install -d -m 0700 "$CONFIG_DIR"
  install -m 0600 "$WORK/agent.json" "$CONFIG_FILE.tmp" && mv -f "$CONFIG_FILE.tmp" "$CONFIG_FILE"
  say "  wrote $CONFIG_FILE (0600): $(jq -r 'keys | join(", ")' "$CONFIG_FILE")"
}

settings_keys_given() {
  local keys=()
  [ -z "${CONTROL_PLANE_URL:-}" ] || keys+=(url)
  [ -z "${REGISTRATION_TOKEN:-}" ] || keys+=(token)
  [ -z "${IS_PROXY:-}" ] || keys+=(proxy)
  [ -z "${PROXY_DRIVER:-}" ] || keys+=(proxyDriver)
  [ -z "${LOGS_ENDPOINT:-}" ] || keys+=(logsEndpoint)
  [ -z "${INSECURE_REGISTRIES:-}" ] || keys+=(insecureRegistries)
  local IFS=,
  printf '%s' "${keys[*]:-no new keys}"
}

# ---------------------------------------------------------------- service

unit_text() {
  cat <<UNIT
# Written by the Techulus agent installer; run the installer again to change it.
[Unit]
Description=Techulus node agent
Documentation=https://github.com/techulus/agent
After=network-online.target podman.socket
Wants=network-online.target podman.socket

[Service]
Type=exec
# Settings (the token included) come from this file, never from the command line.
Environment=AGENT_CONFIG=$CONFIG_FILE
ExecStart=$BIN run
# Only the agent stops with the unit: conmon, and with it every container, keeps running.
KillMode=process
Restart=always
RestartSec=5
TimeoutStopSec=$STOP_TIMEOUT_SECONDS

[Install]
WantedBy=multi-user.target
UNIT
}

install_unit() {
  local desired
  desired=$(unit_text)
  if [ "$(cat "$UNIT_FILE" 2>/dev/null)" = "$desired" ]; then say "  $UNIT_FILE unchanged"; else
    if $DRY_RUN; then say "  would write $UNIT_FILE"; else
      printf '%s\n' "$desired" >"$UNIT_FILE.tmp" && mv -f "$UNIT_FILE.tmp" "$UNIT_FILE"
      say "  wrote $UNIT_FILE"
    fi
  fi
  systemctl_do daemon-reload
  systemctl_do enable "$UNIT_NAME"
}

unit_restarts() { systemctl show -p NRestarts --value "$UNIT_NAME"; }

# The agent exited since it was (re)started: systemd restarted it, or waits to (RestartSec).
agent_exited() { [ "$(unit_restarts)" != "$1" ] || [ "$(systemctl show -p SubState --value "$UNIT_NAME")" = auto-restart ]; }

# Restarts the agent and waits until it is registered and stays up; when it exits or does not
# register in time: shows its last log lines, then puts the previous binary back and starts that
# (an upgrade), or stops and disables the service (a first install).
start_agent() {
  local was_registered=$1
  if $DRY_RUN; then say "  would run: systemctl restart $UNIT_NAME, then wait for registration and print agent doctor's summary"; return 0; fi
  systemctl restart "$UNIT_NAME" || true
  local restarts deadline=$((SECONDS + REGISTER_TIMEOUT_SECONDS)) problem=""
  restarts=$(unit_restarts)
  while [ -z "$problem" ]; do
    if agent_exited "$restarts"; then problem="the agent exited"
    elif [ $SECONDS -ge $deadline ]; then problem="the agent did not register within ${REGISTER_TIMEOUT_SECONDS} s"
    elif systemctl is-active --quiet "$UNIT_NAME" && is_registered; then
      # Registered and up: still up a moment later?
      sleep 3
      if agent_exited "$restarts"; then problem="the agent exited"; break; fi
      local server
      server=$(jq -r .serverId "$(data_dir)/config.json")
      if $was_registered; then say "  running, identity kept: server $server"; else say "  registered as server $server and running"; fi
      return 0
    else
      sleep 1
    fi
  done
  say "  $problem; its last log lines:"
  journalctl -u "$UNIT_NAME" -n 25 --no-pager -o cat 2>/dev/null | sed 's/^/    /' || true
  systemctl stop "$UNIT_NAME" 2>/dev/null || true
  if [ -n "${INSTALLED_OVER:-}" ] && [ -x "$PREVIOUS_BIN" ]; then
    cp -p "$PREVIOUS_BIN" "$BIN.tmp" && mv -f "$BIN.tmp" "$BIN"
    systemctl start "$UNIT_NAME" || true
    fail "$problem with the new binary: the previous one ($("$BIN" --version)) is back in place and started"
  fi
  systemctl disable "$UNIT_NAME" >/dev/null 2>&1 || true
  fail "$problem (its log is above); the service is stopped and disabled. Fix the cause and run the installer again"
}

doctor_summary() {
  if $DRY_RUN; then return 0; fi
  local report
  report=$("$BIN" doctor 2>&1) || true
  say "agent doctor:"
  # Everything that is not fine, and the summary line.
  printf '%s\n' "$report" | grep -v '^✓' | sed 's/^/  /'
}

# ---------------------------------------------------------------- actions

do_install() {
  local registered=false
  is_registered && registered=true
  require AGENT_DOWNLOAD_URL --download-url "Download URL of the agent release (AGENT_DOWNLOAD_URL)"
  if ! $registered; then
    [ -n "${CONTROL_PLANE_URL:-}" ] || [ -n "$(config_value url)" ] || require CONTROL_PLANE_URL --url "Control plane URL"
    [ -n "${REGISTRATION_TOKEN:-}" ] || [ -n "$(config_value token)" ] || require REGISTRATION_TOKEN --token "Registration token" secret
  fi
  validate_inputs

  say "1/6 prerequisites"
  apt_install curl ca-certificates jq gzip
  say "2/6 download"
  download_release
  $DRY_RUN || prepare_settings
  say "3/6 host setup"
  setup_host
  say "4/6 settings"
  write_settings
  say "5/6 binary"
  INSTALLED_OVER=""
  [ -x "$BIN" ] && ! cmp -s "$BIN" "$WORK/agent" && INSTALLED_OVER=$BIN
  install_binary
  if ! $SYSTEMD; then
    say "6/6 service: skipped, systemd is not running here (PID 1 is $(cat /proc/1/comm 2>/dev/null || echo unknown))"
    say "  skipped: podman.socket (the agent starts Podman's service itself) and $UNIT_NAME"
    say "  run the agent under your supervisor: $BIN run   (settings from $CONFIG_FILE)"
    say "  or once from cron: $BIN reconcile --once"
    return 0
  fi
  say "6/6 service"
  install_unit
  start_agent "$registered"
  doctor_summary
  say "done: agent $RELEASE_VERSION is running as $UNIT_NAME (journalctl -u $UNIT_NAME -f)"
}

managed_containers() { podman ps -a -q --filter "label=$MANAGED_LABEL" 2>/dev/null || true; }

do_uninstall() {
  if $SYSTEMD && [ -f "$UNIT_FILE" ]; then
    say "stopping and removing $UNIT_NAME"
    systemctl_do disable --now "$UNIT_NAME"
    if $DRY_RUN; then say "  would remove $UNIT_FILE"; else rm -f "$UNIT_FILE"; fi
    systemctl_do daemon-reload
  else
    say "no $UNIT_NAME to remove"
  fi
  local file
  for file in "$BIN" "$PREVIOUS_BIN"; do
    [ -e "$file" ] || continue
    if $DRY_RUN; then say "  would remove $file"; else rm -f "$file"; say "  removed $file"; fi
  done
}

# Caddy's live config without the agent's routes, certificates (@id "techulus-…") and access
# logger; everything of the operator's stays.
CADDY_WITHOUT_AGENT='walk(if type == "array" then map(select(type != "object" or ((."@id" // "") | tostring | startswith("techulus-") | not))) else . end)
  | if .apps.http.servers then .apps.http.servers |= map_values(if .logs.logger_names then .logs.logger_names |= with_entries(select(.value != "techulus-access")) else . end) else . end
  | if .logging.logs then .logging.logs |= del(.["techulus-access"]) else . end'

remove_proxy_config() {
  [ "$(config_value proxy)" = true ] || return 0
  local admin live clean count dynamic certs file
  admin=$(config_value caddyAdminUrl); admin=${admin:-http://127.0.0.1:2019}
  if live=$(curl -fsS --max-time 5 "$admin/config/" 2>/dev/null) && [ "$live" != null ]; then
    count=$(printf '%s' "$live" | jq '[.. | objects | ."@id"? // empty | tostring | select(startswith("techulus-"))] | length')
    if [ "$count" -gt 0 ]; then
      if $DRY_RUN; then
        say "  would remove the agent's $count route(s) and certificate(s) from Caddy ($admin)"
      else
        clean=$(printf '%s' "$live" | jq -c "$CADDY_WITHOUT_AGENT")
        curl -fsS --max-time 30 -X POST -H 'Content-Type: application/json' --data-binary "$clean" "$admin/load" >/dev/null \
          || fail "Caddy at $admin refused its config without the agent's routes; nothing of Caddy was changed"
        say "  removed the agent's $count route(s) and certificate(s) from Caddy ($admin)"
      fi
    fi
  fi
  dynamic=$(config_value traefikDynamicDir); dynamic=${dynamic:-/etc/traefik/dynamic}
  certs="$(dirname "$dynamic")/certs"
  for file in "$dynamic/routes.yaml" "$dynamic/tls.yaml" "$certs"/*.[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f].{crt,key}; do
    [ -f "$file" ] || continue
    if $DRY_RUN; then say "  would remove $file (Traefik)"; else rm -f "$file"; say "  removed $file (Traefik)"; fi
  done
}

do_purge() {
  local ids count data network iface run_dir
  data=$(data_dir)
  network=$(config_value networkName); network=${network:-techulus}
  iface=$(config_value wireguardInterface); iface=${iface:-wg0}
  run_dir=$(config_value dnsRunDir); run_dir=${run_dir:-$DEFAULT_DNS_RUN_DIR}
  command -v podman >/dev/null 2>&1 && ids=$(managed_containers) || ids=""
  count=$(printf '%s' "$ids" | grep -c . || true)
  say "--purge removes the agent, $count managed container(s), its proxy routes, the network $network, the data in $data and $CONFIG_DIR"
  if ! $ASSUME_YES && ! $DRY_RUN && { true </dev/tty; } 2>/dev/null; then
    local answer=""
    read -r -p "Type yes to go on: " answer </dev/tty >/dev/tty 2>&1
    [ "$answer" = yes ] || { say "nothing removed"; exit 1; }
  fi
  local registered=false
  is_registered && registered=true
  do_uninstall
  if [ "$count" -gt 0 ]; then
    say "removing $count managed container(s)"
    # shellcheck disable=SC2086 # one id per word
    if $DRY_RUN; then say "  would run: podman rm -f ${ids//$'\n'/ }"; else podman rm -f -t 10 $ids >/dev/null; fi
  fi
  remove_proxy_config
  if command -v podman >/dev/null 2>&1 && podman network exists "$network" 2>/dev/null; then
    if $DRY_RUN; then say "  would remove the podman network $network"; else podman network rm -f "$network" >/dev/null && say "  removed the podman network $network"; fi
  fi
  local pid
  pid=$(cat "$run_dir/dnsmasq.pid" 2>/dev/null || true)
  if [[ $pid =~ ^[0-9]+$ ]] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dnsmasq ]; then
    if $DRY_RUN; then say "  would stop the agent's dnsmasq (pid $pid)"; else kill "$pid" && say "  stopped the agent's dnsmasq (pid $pid)"; fi
  fi
  if $registered && ip link show "$iface" >/dev/null 2>&1; then
    if $DRY_RUN; then say "  would delete the WireGuard interface $iface"; else ip link del "$iface" && say "  deleted the WireGuard interface $iface"; fi
  fi
  for dir in "$data" "$(dirname "$run_dir")" "$CONFIG_DIR"; do
    [ -e "$dir" ] || continue
    if $DRY_RUN; then say "  would remove $dir"; else rm -rf "$dir"; say "  removed $dir"; fi
  done
  say "packages (Podman, dnsmasq, WireGuard tools, Caddy) stay installed: remove them with apt if nothing else uses them"
}

main() {
  parse_args "$@"
  detect_host
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  $DRY_RUN && say "dry run: printing every step, changing nothing"
  case $ACTION in
    install) do_install ;;
    uninstall) do_uninstall; say "done: the data in $(data_dir), $CONFIG_DIR and the containers are kept" ;;
    purge) do_purge; say "done: nothing of the agent is left" ;;
    host-only) validate_inputs; setup_host ;;
  esac
}

main "$@"
