#!/bin/bash
# README command (2): the whole test suite, end-to-end tests included, on a
# fresh Debian 12 host as root. Installs everything the tests need (Debian
# packages, then npm packages from the lockfile) and runs `npm test`.
# .ci/run runs exactly this.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash ./install.sh --deps-only
# Test-only tools: npm to install the dev toolchain, debootstrap for the
# Debian 13 root the e2e suite runs libvirt 11 in, and xmllint for
# virt-xml-validate (a shell script around it; the script itself and virsh
# come with libvirt-clients, one of install.sh's demo packages, on Debian 12
# and 13; the XML unit tests need both under CI=true); systemd for
# `systemd-analyze verify` of the watcher's unit (it runs where systemd is not
# PID 1); virtinst for the e2e tests that create VMs the way `virt-install`
# does (the Debian 12 sandbox runs the host's binaries; the Debian 13 root
# gets its own, see test/support/rootfs.ts); patch, which proves `virtwire
# plan`'s diffs are real unified diffs (test/unit/diff.test.ts).
pkgs=(ca-certificates debootstrap libxml2-utils patch systemd virtinst)
# Debian's npm, unless one came with the Node already installed (NodeSource's
# nodejs bundles npm and conflicts with Debian's package).
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null

# openvswitch-switch: ovsdb-server, ovs-vswitchd and the ovs-vsctl libvirt runs
# for <virtualport type='openvswitch'/>; test/support/ovs.ts runs them inside
# the e2e sandbox only. Its postinst starts both daemons on the host
# (`invoke-rc.d openvswitch-switch start`; checked on Debian 12 where systemd
# is not PID 1: invoke-rc.d runs the init script, ovs-ctl skips the missing
# kernel module and both stay running, with a /etc/openvswitch/conf.db; under
# systemd the postinst's deb-systemd-invoke would start the unit). Unless the
# host already has a policy-rc.d (Docker images ship one that denies every
# start), one that denies every start exists for this install only: both
# invoke-rc.d and deb-systemd-invoke obey it (checked without a policy-rc.d:
# package installed, no daemon left, the temporary policy-rc.d gone).
if ! dpkg-query -W -f '${Status}' openvswitch-switch 2>/dev/null | grep -q 'install ok installed'; then
  own_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    own_policy=/usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    printf '#!/bin/sh\n# virtwire test/run.sh: no daemon starts while openvswitch-switch is installed\nexit 101\n' >"$own_policy"
    chmod 0755 "$own_policy"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openvswitch-switch >/dev/null
  if [ -n "$own_policy" ]; then
    rm -f "$own_policy"
    trap - EXIT
  fi
fi
npm ci --no-audit --no-fund --loglevel=error
# VIRTWIRE_FIGURES=check: after the run, README's figures table must be what this run measured.
VIRTWIRE_FIGURES=check npm test
