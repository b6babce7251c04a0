#!/usr/bin/python3
# The reference issue 12 compares virtwire with: a libvirt qemu hook the way
# the popular port-forward hooks work, written for bench/hook-cost.ts (not
# shipped, not used by virtwire). One iptables DNAT rule and one FORWARD
# accept per forward, one iptables process per rule, inserted at `start` and
# deleted at `stopped`; the forwards come from a JSON file:
#   {"VM": {"guest": "192.168.122.10", "forwards": [{"proto": "tcp", "host": 20000, "guest": 80}, ...]}}
import json
import subprocess
import sys

CONFIG = '/etc/vw-reference-forwards.json'


def rules(guest, fw):
    dest = f"{guest}:{fw['guest']}"
    return [
        ['-t', 'nat', '{}', 'PREROUTING', '-p', fw['proto'], '--dport', str(fw['host']), '-j', 'DNAT', '--to-destination', dest],
        ['-t', 'filter', '{}', 'FORWARD', '-d', f'{guest}/32', '-p', fw['proto'], '--dport', str(fw['guest']), '-j', 'ACCEPT'],
    ]


def main():
    name, op = sys.argv[1], sys.argv[2]
    if op not in ('start', 'stopped'):
        return 0
    with open(CONFIG) as f:
        vm = json.load(f).get(name)
    if vm is None:
        return 0
    action = '-I' if op == 'start' else '-D'
    for fw in vm['forwards']:
        for rule in rules(vm['guest'], fw):
            subprocess.run(['iptables', '-w'] + [action if a == '{}' else a for a in rule], check=op == 'start')
    return 0


sys.exit(main())
