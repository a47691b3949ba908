#!/usr/bin/env bash
# Prepare this machine for coderun: Docker engine, debootstrap, a Python venv with
# coderun installed. Idempotent; sourced by scripts/demo and scripts/test.
# Installing packages and starting dockerd need root; as another user it says what to do.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CODERUN_VENV:-$ROOT/.venv}"

say() { printf '[setup] %s\n' "$*" >&2; }

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need_pkgs+=(debootstrap)
command -v nft >/dev/null 2>&1 || need_pkgs+=(nftables)
command -v iptables-restore >/dev/null 2>&1 || need_pkgs+=(iptables)
command -v tmux >/dev/null 2>&1 || need_pkgs+=(tmux)
command -v hyperfine >/dev/null 2>&1 || need_pkgs+=(hyperfine)  # the start-up benchmark
command -v fusermount3 >/dev/null 2>&1 || need_pkgs+=(fuse3)  # --share: the FUSE mounts
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_pkgs+=(python3-venv)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    say "missing: ${need_pkgs[*]}. Run: sudo apt-get install -y ${need_pkgs[*]}"; exit 1
  fi
  say "installing ${need_pkgs[*]} ..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    say "no Docker engine answers. Start one: sudo dockerd &  (or: sudo service docker start)"; exit 1
  fi
  say "starting dockerd (log: /var/log/coderun-dockerd.log) ..."
  nohup dockerd >/var/log/coderun-dockerd.log 2>&1 &
  for _ in $(seq 1 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { say "dockerd did not start:"; tail -20 /var/log/coderun-dockerd.log >&2; exit 1; }
fi

# gVisor for `coderun run --runtime runsc` (and its test): Debian's runsc as a Docker
# runtime. ptrace works without KVM; --network=host makes runsc use the namespace the
# sandbox shares (the holder's) through the host stack. dockerd re-reads its runtimes on
# SIGHUP: it is reloaded, never restarted (running containers are not touched).
if [ "$(id -u)" -eq 0 ] && [ "${CODERUN_SETUP_RUNSC:-1}" = 1 ]; then
  if ! command -v runsc >/dev/null 2>&1; then
    say "installing runsc (gVisor) ..."
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runsc >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 \
           && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runsc >/dev/null 2>&1; }; } \
      || say "runsc is not available here: --runtime runsc and its test are skipped"
  fi
  if command -v runsc >/dev/null 2>&1 \
      && ! docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"'; then
    say "registering runsc with dockerd (/etc/docker/daemon.json, SIGHUP) ..."
    mkdir -p /etc/docker
    python3 - "$(command -v runsc)" <<'PY'
import json, os, sys
path = "/etc/docker/daemon.json"
try:
    with open(path) as f:
        config = json.load(f)
except FileNotFoundError:
    config = {}
config.setdefault("runtimes", {})["runsc"] = {
    "path": sys.argv[1], "runtimeArgs": ["--platform=ptrace", "--network=host"]}
with open(path + ".tmp", "w") as f:
    json.dump(config, f, indent=2)
os.replace(path + ".tmp", path)
PY
    for pid in $(pidof dockerd); do kill -HUP "$pid"; done
    for _ in $(seq 1 40); do
      docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"' && break
      sleep 0.25
    done
  fi
fi

stamp="$VENV/.coderun-installed"
want="$ROOT $(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "creating $VENV and installing coderun with its test tools ..."
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q -e "$ROOT[dev]"
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
