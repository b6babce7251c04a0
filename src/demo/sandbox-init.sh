#!/bin/bash
# PID 1 of a virtwire e2e sandbox. sandbox.ts starts it as
#   nsenter --net=/run/netns/vw-h-… unshare --mount --propagation private \
#     --pid --fork --kill-child --mount-proc bash sandbox-init.sh DIR [ROOTFS REPODIR]
# so it runs in the sandbox "host" netns, a private mount namespace and a new
# PID namespace. Everything it mounts vanishes with that mount namespace; the
# host's mount table, /etc and /var are never written.
#
# Modes
#   Debian 12 (no ROOTFS): the host's own libvirt 9.0, with every directory
#     libvirt or virtwire's install.sh writes overlaid (upper dirs in DIR).
#   rootfs (ROOTFS = a prepared Debian 13 root): an overlay of that root (so
#     the cached root stays pristine) is entered with pivot_root and its
#     libvirt 11 runs. LIBVIRT-NOTES: chroot is not enough — QEMU fails
#     "Failed disable mount propagation out of the root filesystem" and passt
#     cannot create its user namespace.
#
# Protocol with sandbox.ts: DIR/ready once libvirtd answers and the `default`
# network is active; DIR/failed (one line: what failed) and exit otherwise.
# Daemon logs go to DIR/logs/.
#
# Environment: VW_SANDBOX_IPV6=1 gives the `default` network an IPv6 range too
# (see below).
set -euo pipefail

dir=${1:?usage: sandbox-init.sh DIR [ROOTFS REPODIR]}
rootfs=${2:-}
repo=${3:-}

fail() {
  echo "sandbox-init: $*" >&2
  echo "$*" >"$dir/failed"
  exit 1
}
trap 'fail "line $LINENO: \"$BASH_COMMAND\" exited $?"' ERR

step() { echo "sandbox-init: $(date +%s.%N | cut -c1-14) $*"; }

mkdir -p "$dir/logs" "$dir/ov"
cd /

# A 0660 root:kvm copy of /dev/kvm. KVM does not work here (TCG only) and the
# real node is 0600 root:root; with that, libvirt considers its cached QEMU
# capabilities stale and re-probes QEMU on every start (+3.4 s, LIBVIRT-NOTES).
# Runs after /etc is private (overlay or pivoted root): it may add group kvm.
fake_kvm() {
  [ -e /dev/kvm ] || return 0
  # Already usable by group kvm (a normal KVM host, or an outer sandbox when the
  # demo runs inside the e2e suite's sandbox): nothing to fake.
  [ "$(stat -c '%a %G' /dev/kvm)" = "660 kvm" ] && return 0
  mknod "$dir/kvm-node" c 10 232
  chown root:kvm "$dir/kvm-node"
  chmod 0660 "$dir/kvm-node"
  mount --bind "$dir/kvm-node" /dev/kvm
}

# The accounts libvirt-daemon-system's postinst would create. Neither the
# Debian 12 host (no libvirt-daemon-system) nor the Debian 13 root has them,
# and the qemu driver refuses to start without its configured user. Written
# into the overlaid /etc only.
ensure_accounts() {
  getent group kvm >/dev/null || groupadd -r kvm
  getent group libvirt >/dev/null || groupadd -r libvirt
  getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
  getent passwd libvirt-qemu >/dev/null ||
    useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
  getent group libvirt-dnsmasq >/dev/null || groupadd -r libvirt-dnsmasq
  getent passwd libvirt-dnsmasq >/dev/null ||
    useradd -r -g libvirt-dnsmasq -d /var/lib/libvirt/dnsmasq -s /usr/sbin/nologin libvirt-dnsmasq
}

# libvirt resolves the host name on every start; a resolver it cannot reach
# (there is no route out of this netns, by design) costs ~10 s per start
# (LIBVIRT-NOTES). Resolve it locally and leave no nameserver.
local_resolver() {
  local h
  h=$(hostname)
  grep -qw -- "$h" /etc/hosts 2>/dev/null || echo "127.0.1.1 $h" >>/etc/hosts
  rm -f /etc/resolv.conf
  : >/etc/resolv.conf
}

overlay() { # overlay DIR: copy-on-write view of DIR, upper layer in $dir/ov
  local d=$1 n
  n=$(echo "$d" | tr / _)
  mkdir -p "$dir/ov/$n/upper" "$dir/ov/$n/work"
  mount -t overlay "vw-ov$n" -o "lowerdir=$d,upperdir=$dir/ov/$n/upper,workdir=$dir/ov/$n/work" "$d"
}

if [ -z "$rootfs" ]; then
  step "Debian 12 mode: private /run, overlaid /etc /usr/local /var/* /opt"
  mount -t tmpfs -o mode=0755 vw-run /run
  for d in /etc /usr/local /var/lib /var/log /var/cache /opt; do
    [ -d "$d" ] && overlay "$d"
  done
  # A fresh sysfs so libvirt sees this namespace's links, not the host's.
  # Detach the old /sys with its cgroup submounts first: libvirt finds cgroup
  # mounts in /proc/mounts and, with them hidden under a new sysfs, fails the
  # start ("Failed to create v1 controller cpu for group"). Without any, it
  # runs QEMU outside cgroups and never touches the host's hierarchy.
  umount -l /sys
  mount -t sysfs vw-sys /sys
else
  step "rootfs mode: $rootfs"
  [ -d "$rootfs/etc" ] || fail "rootfs $rootfs has no /etc (not a prepared root?)"
  [ -d "$repo" ] || fail "repo dir $repo does not exist"
  nr=$dir/newroot
  mkdir -p "$nr" "$dir/ov/root/upper" "$dir/ov/root/work"
  # The whole root is an overlay: a test run never modifies the cached root.
  mount -t overlay vw-root -o "lowerdir=$rootfs,upperdir=$dir/ov/root/upper,workdir=$dir/ov/root/work" "$nr"
  mount -t proc vw-proc "$nr/proc"
  mount -t sysfs vw-sys "$nr/sys"
  mount --rbind /dev "$nr/dev"
  mount --make-rslave "$nr/dev"
  mount -t tmpfs -o mode=0755 vw-run "$nr/run"
  mount -t tmpfs -o mode=1777 vw-tmp "$nr/tmp"
  # DIR is visible at the same path inside, so paths sandbox.ts writes (guest
  # image, serial logs, domain XML) mean the same on both sides.
  mkdir -p "$nr$dir"
  mount --bind "$dir" "$nr$dir"
  mkdir -p "$nr/opt/virtwire-src"
  mount --bind "$repo" "$nr/opt/virtwire-src"
  # Nothing above this line may write the host's /etc: it is still visible.
  mkdir -p "$nr/oldroot"
  cd "$nr"
  pivot_root . oldroot
  cd /
  umount -l /oldroot
  rmdir /oldroot
fi

ensure_accounts
local_resolver
fake_kvm
mkdir -p /run/libvirt /var/lib/libvirt/qemu /var/lib/libvirt/network /var/lib/libvirt/dnsmasq \
  /var/lib/libvirt/images /var/log/libvirt/qemu /var/cache/libvirt/qemu \
  /etc/libvirt/qemu/networks/autostart /etc/libvirt/hooks

step "starting virtlogd and libvirtd"
# Both daemonize and are re-parented to this shell (PID 1 here), which reaps them.
LIBVIRT_LOG_OUTPUTS="3:file:$dir/logs/virtlogd.log" virtlogd -d
LIBVIRT_LOG_OUTPUTS="3:file:$dir/logs/libvirtd.log" libvirtd -d

virsh_() { LC_ALL=C timeout 30 virsh -c qemu:///system "$@"; }
ok=
for _ in $(seq 1 300); do
  if virsh_ uri >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.1
done
[ -n "$ok" ] || fail "libvirtd did not answer on qemu:///system within 30 s (see $dir/logs/libvirtd.log)"
step "libvirtd up: $(virsh_ version --daemon | grep -i 'running hypervisor\|daemon' | tr '\n' ' ')"

# Debian's libvirt-daemon-config-network ships the stock NAT network in
# /usr/share/libvirt/networks/default.xml (the Debian 13 root has it; this
# Debian 12 host does not, so fall back to the same content). One deliberate
# change: stp='off'. With STP on (libvirt's default) a new tap port spends
# ~2 s in listening/learning, so every guest's first DHCP discovers are lost:
# READY after ~4.5 s instead of ~2.5 s (measured). virtwire does not depend on STP.
if ! virsh_ net-info default >/dev/null 2>&1; then
  netxml=$dir/default-network.xml
  if [ -f /usr/share/libvirt/networks/default.xml ]; then
    cp /usr/share/libvirt/networks/default.xml "$netxml"
  else
    cat >"$netxml" <<'EOF'
<network>
  <name>default</name>
  <bridge name='virbr0'/>
  <forward/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>
EOF
  fi
  sed -i "s|<bridge name='virbr0'/>|<bridge name='virbr0' stp='off' delay='0'/>|" "$netxml"
  # VW_SANDBOX_IPV6=1: a ULA range served by DHCPv6 (dnsmasq, with router
  # advertisements for the default route), and NAT for IPv6 as for IPv4
  # (<nat ipv6='yes'/>, libvirt >= 6.5): libvirt's IPv6 firewall then admits
  # only replies into the network, exactly as for IPv4, so an inbound IPv6
  # forward needs virtwire's accept. (Without it the range would be routed and
  # libvirt would accept every connection to fd00:77::/64 by itself.)
  if [ "${VW_SANDBOX_IPV6:-}" = 1 ]; then
    sed -i "s|<forward/>|<forward mode='nat'><nat ipv6='yes'/></forward>|" "$netxml"
    sed -i "s|</network>|  <ip family='ipv6' address='fd00:77::1' prefix='64'>\n    <dhcp>\n      <range start='fd00:77::100' end='fd00:77::1ff'/>\n    </dhcp>\n  </ip>\n</network>|" "$netxml"
    grep -q "<nat ipv6='yes'/>" "$netxml" || fail "could not enable IPv6 NAT in $netxml"
  fi
  virsh_ net-define "$netxml" >/dev/null || fail "virsh net-define $netxml failed (see $dir/logs/libvirtd.log)"
fi
virsh_ net-start default >/dev/null || fail "virsh net-start default failed (see $dir/logs/libvirtd.log)"
step "default network active"
touch "$dir/ready"

# Stay PID 1. QEMU is daemonized by libvirt, so when it exits its zombie is
# re-parented here, and libvirt's destroy waits until that zombie is gone.
# While bash sits in `wait`, its SIGCHLD handler reaps every child with
# waitpid(-1), known jobs or not, so zombies disappear at once (destroy
# ~0.2 s instead of ~1.6 s with a slow reaper, LIBVIRT-NOTES).
trap - ERR
set +e
while :; do
  sleep 3600 &
  wait $!
done
