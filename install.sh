#!/bin/bash
# Installs virtwire on a Debian 12/13 libvirt host. Non-interactive, idempotent.
#
#   ./install.sh [--with-deps] [--no-restart]   install (or update)
#   ./install.sh --deps-only                    only install the Debian packages
#   ./install.sh --uninstall [--no-restart]     remove all it installed except /etc/virtwire (needs no Node)
#
# Installs the bundle in /usr/local/lib/virtwire, the hooks as
# /etc/libvirt/hooks/{qemu.d,network.d}/virtwire (and a tmpfiles.d line that
# arms the network hook at boot), the `virtwire` command in
# /usr/local/bin, example templates in /etc/virtwire/examples and
# /etc/virtwire/virtwire.yaml only where absent, and the watcher's unit
# /etc/systemd/system/virtwire-watch.service (enabled and (re)started when
# systemd runs the host). Then makes the running libvirt daemon(s) pick the
# hooks up (SIGHUP; --no-restart skips it).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LIBDIR=/usr/local/lib/virtwire
BINDIR=/usr/local/bin
ETC=/etc/virtwire
HOOKS=/etc/libvirt/hooks
UNIT=virtwire-watch.service
UNITDIR=/etc/systemd/system
TMPFILES=/usr/local/lib/tmpfiles.d/virtwire.conf

# What a host needs to run virtwire, and what `virtwire demo` needs on top
# (a throwaway libvirtd and a tiny guest built from Debian packages).
RUNTIME_PKGS=(nodejs nftables util-linux iproute2)
BUILD_PKGS=(npm)
DEMO_PKGS=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 dnsmasq-base
           iptables busybox-static cpio kmod xz-utils)

with_deps=0 deps_only=0 restart=1 uninstall=0
for arg in "$@"; do
  case "$arg" in
    --with-deps) with_deps=1 ;;
    --deps-only) with_deps=1 deps_only=1 ;;
    --no-restart) restart=0 ;;
    --uninstall) uninstall=1 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

say() { echo "install.sh: $*"; }
die() { echo "install.sh: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it writes /etc/libvirt/hooks and /usr/local)"

# systemd runs this host (sd_booted(3): /run/systemd/system exists).
have_systemd() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

# The watcher's unit: installed, then enabled and (re)started under systemd
# (a restart picks up a new bundle); without systemd, one line on how to run it.
install_unit() {
  install -d -m 0755 "$UNITDIR"
  install -m 0644 "$SRC/hooks/$UNIT" "$UNITDIR/$UNIT.new" && mv -f "$UNITDIR/$UNIT.new" "$UNITDIR/$UNIT"
  if have_systemd; then
    systemctl daemon-reload
    if systemctl enable --quiet "$UNIT" && systemctl restart "$UNIT"; then
      say "watcher: $UNIT enabled and started (journalctl -u ${UNIT%.service})"
    else
      say "warning: watcher: could not enable or start $UNIT; see systemctl status $UNIT"
    fi
  else
    say "watcher: systemd is not running here; start it from your init system or with: nohup $BINDIR/virtwire watch >>/var/log/virtwire-watch.out 2>&1 &"
  fi
}

remove_unit() {
  if have_systemd && [ -e "$UNITDIR/$UNIT" ]; then
    systemctl disable --now --quiet "$UNIT" || say "warning: could not stop $UNIT (systemctl disable --now failed)"
  fi
  if [ -e "$UNITDIR/$UNIT" ]; then
    rm -f "$UNITDIR/$UNIT"
    if have_systemd; then systemctl daemon-reload; fi
    say "removed $UNITDIR/$UNIT"
  fi
}

# Whether the Node at path $1 runs and is >= 18.19.
node_ok() {
  [ -f "$1" ] && [ -x "$1" ] && "$1" -e '
    const [a, b] = process.versions.node.split(".").map(Number);
    process.exit(a > 18 || (a === 18 && b >= 19) ? 0 : 1)' 2>/dev/null
}

# The Node the hooks will run, as a path that stays put: Debian's
# /usr/bin/node first, then /usr/local/bin/node, then whatever PATH finds
# (possibly an nvm or user install, which may later move or vanish). Never
# resolved through symlinks: /usr/bin/node survives package upgrades, the
# versioned file behind it may not.
pick_node() {
  local c
  for c in /usr/bin/node /usr/local/bin/node "$(command -v node 2>/dev/null || true)"; do
    if [ -n "$c" ] && node_ok "$c"; then echo "$c"; return 0; fi
  done
  return 1
}

install_deps() {
  local pkgs=() p
  for p in "${RUNTIME_PKGS[@]}" "${DEMO_PKGS[@]}"; do
    # Keep a Node the admin installed if it is new enough; Debian's own is fine too (>= 18.19).
    if [ "$p" = nodejs ] && pick_node >/dev/null; then continue; fi
    pkgs+=("$p")
  done
  # npm only to build, and only if there is none (NodeSource's nodejs bundles
  # its own npm and conflicts with Debian's package).
  if [ ! -f "$SRC/dist/virtwire.mjs" ] && ! command -v npm >/dev/null 2>&1; then pkgs+=("${BUILD_PKGS[@]}"); fi
  say "installing Debian packages: ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
}

# Signal whichever libvirt daemons run (monolithic libvirtd, or the modular
# virtqemud + virtnetworkd): libvirt notes at start or SIGHUP whether a
# driver has hooks. Works with and without systemd as PID 1.
reload_libvirt() {
  [ "$restart" = 1 ] || { say "--no-restart: reload libvirt yourself (kill -HUP the libvirtd or virtqemud/virtnetworkd pids)"; return 0; }
  local found=0 d
  for d in libvirtd virtqemud virtnetworkd; do
    local pids
    pids=$(pidof "$d" 2>/dev/null || true)
    [ -n "$pids" ] || continue
    found=1
    # shellcheck disable=SC2086 # a list of pids
    kill -HUP $pids && say "sent SIGHUP to $d ($pids)"
  done
  [ "$found" = 1 ] || say "no libvirt daemon is running; it will find the hooks when it starts"
}

# What `virtwire purge` removes, done from the shell for when it cannot run
# (Node or the bundle already gone): the nft table, and every rule carrying
# virtwire's comment (any mark) in libvirt's chains — nft rules by handle,
# iptables rules by deleting the exact rule `-S` printed. Rule text is split
# into arguments, never evaluated as shell code. Reports only what it removed.
sweep_firewall() {
  local fam h line tool
  local -a args
  if command -v nft >/dev/null 2>&1; then
    if nft list table inet virtwire >/dev/null 2>&1 && nft delete table inet virtwire; then
      say "fallback: removed nft table inet virtwire"
    fi
    for fam in ip ip6; do
      while read -r h; do
        nft delete rule "$fam" libvirt_network guest_input handle "$h" &&
          say "fallback: removed virtwire's accept from nft $fam libvirt_network guest_input"
      done < <(nft -a list chain "$fam" libvirt_network guest_input 2>/dev/null |
                 sed -nE 's/.*comment "virtwire:mark=0x[0-9a-f]{8}".* # handle ([0-9]+)$/\1/p')
    done
  fi
  for tool in iptables ip6tables; do
    command -v "$tool" >/dev/null 2>&1 || continue
    while IFS= read -r line; do
      read -ra args <<<"${line//\"/}"
      args[0]=-D
      "$tool" -w "${args[@]}" && say "fallback: removed virtwire's accept from $tool filter FORWARD"
    done < <("$tool" -w -S FORWARD 2>/dev/null | grep -E '^-A FORWARD .*virtwire:mark=0x[0-9a-f]{8}')
  done
  return 0
}

if [ "$uninstall" = 1 ]; then
  # The watcher first, then the hooks, so that nothing applies new forwards meanwhile.
  remove_unit
  rm -f "$HOOKS/qemu.d/virtwire" "$HOOKS/network.d/virtwire" "$TMPFILES"
  if [ -x "$BINDIR/virtwire" ] && "$BINDIR/virtwire" purge; then
    :
  else
    say "warning: virtwire purge could not run; removing virtwire's firewall rules from the shell"
  fi
  sweep_firewall
  rm -f "$BINDIR/virtwire"
  rm -rf "$LIBDIR" /run/virtwire
  reload_libvirt
  say "uninstalled; $ETC was kept (remove it yourself if you want)"
  exit 0
fi

[ "$with_deps" = 1 ] && install_deps
[ "$deps_only" = 1 ] && exit 0

NODE=$(pick_node) || die "Node.js >= 18.19 is needed (Debian 12's nodejs is fine): run ./install.sh --with-deps"
case "$NODE" in
  /home/*|/root/*|*/.nvm/*|*/.volta/*|*/.fnm/*|*/.asdf/*|*/.local/*|*/versions/node/*)
    say "warning: $NODE is in a home directory or a Node version manager's tree; if it moves or goes, virtwire's hooks refuse to start VMs (running VMs keep running). Prefer a system Node: apt-get install nodejs, then run install.sh again" ;;
esac
say "hooks will run Node $NODE ($("$NODE" --version))"

# Build the bundle unless a build at least as new as every source is there
# (with dist/demo.mjs, which a build from before the demo had its own bundle lacks).
# An installed copy (LIBDIR, run by `virtwire demo`) has no src/: it is its own build.
if [ ! -f "$SRC/dist/virtwire.mjs" ] || { [ -d "$SRC/src" ] && { [ ! -f "$SRC/dist/demo.mjs" ] || [ -n "$(find "$SRC/src" "$SRC/package.json" -newer "$SRC/dist/virtwire.mjs" -print -quit 2>/dev/null)" ]; }; }; then
  command -v npm >/dev/null || die "npm is needed to build virtwire: run ./install.sh --with-deps"
  say "building (npm ci && npm run build)"
  (cd "$SRC" && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)
fi

install -d -m 0755 "$BINDIR" "$HOOKS/qemu.d" "$HOOKS/network.d" "$ETC" "$ETC/templates" "$ETC/examples"
# LIBDIR mirrors the repository's layout (dist/, hooks/, templates/,
# install.sh), so `virtwire demo` can re-run this installer from there inside
# its sandbox. Files are replaced via temp name + rename: a hook that runs
# meanwhile sees the old or the new file, never half of one.
if [ "$SRC" != "$LIBDIR" ]; then
  install -d -m 0755 "$LIBDIR/dist" "$LIBDIR/hooks" "$LIBDIR/templates/schema" "$LIBDIR/templates/config" "$LIBDIR/templates/plugins"
  for f in dist/virtwire.mjs dist/qemu-hook.cjs dist/network-hook.cjs dist/demo.mjs dist/sandbox-init.sh \
           hooks/qemu hooks/network hooks/virtwire hooks/run-node.sh hooks/render.sh hooks/$UNIT hooks/virtwire.tmpfiles \
           templates/schema/template.schema.json templates/config/virtwire.yaml install.sh package.json; do
    install -m 0644 "$SRC/$f" "$LIBDIR/$f.new" && mv -f "$LIBDIR/$f.new" "$LIBDIR/$f"
  done
  for f in "$SRC"/templates/*.yaml; do install -m 0644 "$f" "$LIBDIR/templates/"; done
  for f in "$SRC"/templates/plugins/*.cjs; do install -m 0644 "$f" "$LIBDIR/templates/plugins/"; done
  chmod 0755 "$LIBDIR/install.sh" "$LIBDIR"/hooks/*
  chmod 0644 "$LIBDIR/hooks/$UNIT" "$LIBDIR/hooks/virtwire.tmpfiles"
fi
"$NODE" -p 'require(process.argv[1]).version' "$SRC/package.json" > "$LIBDIR/VERSION"

# Shims: absolute Node path (libvirt clears PATH for hooks), rendered by
# hooks/render.sh, written via a temp file and rename so a hook never runs a
# half-written file.
shim() {
  local from=$1 to=$2
  sh "$SRC/hooks/render.sh" "$from" "$NODE" "$LIBDIR/dist" > "$to.new" || { rm -f "$to.new"; die "could not render the $from shim"; }
  chmod 0755 "$to.new"
  mv -f "$to.new" "$to"
}
shim qemu "$HOOKS/qemu.d/virtwire"
shim network "$HOOKS/network.d/virtwire"
shim virtwire "$BINDIR/virtwire"
# At boot, the network hook armed before libvirtd starts (hooks/virtwire.tmpfiles).
install -d -m 0755 "${TMPFILES%/*}"
install -m 0644 "$SRC/hooks/virtwire.tmpfiles" "$TMPFILES.new" && mv -f "$TMPFILES.new" "$TMPFILES"
# Hook bundles from before the hooks became CommonJS (.cjs): no shim points at them any more.
rm -f "$LIBDIR/dist/qemu-hook.mjs" "$LIBDIR/dist/network-hook.mjs"

for f in "$SRC"/templates/*.yaml; do
  [ -e "$ETC/examples/$(basename "$f")" ] || install -m 0644 "$f" "$ETC/examples/"
done
# The example plugin: an example only; virtwire loads plugins from $ETC/plugins.
install -d -m 0755 "$ETC/examples/plugins"
for f in "$SRC"/templates/plugins/*.cjs; do
  [ -e "$ETC/examples/plugins/$(basename "$f")" ] || install -m 0644 "$f" "$ETC/examples/plugins/"
done
[ -e "$ETC/virtwire.yaml" ] || install -m 0644 "$SRC/templates/config/virtwire.yaml" "$ETC/virtwire.yaml"
chmod 0755 "$ETC" "$ETC/templates"

reload_libvirt
install_unit
say "installed virtwire $(cat "$LIBDIR/VERSION") (Node $NODE $("$NODE" --version)); templates go in $ETC/templates (examples in $ETC/examples)"
