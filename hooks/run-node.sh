# ---- hooks/run-node.sh, put into each hook shim by hooks/render.sh ----
# Runs Node on the hook's bundle. When that cannot happen (Node removed or
# moved since install.sh ran: nvm, NodeSource, a purge; the bundle missing;
# Node crashing), an operation that may fail ($fail_closed=1) refuses with one
# clear line, and any other exits 0 and says why on stderr and in the system
# log: a running VM is never killed, a network never failed, because
# virtwire cannot run.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
vw_cannot() { # vw_cannot REASON: report, then exit 1 (fail closed) or 0
  if [ "$fail_closed" = 1 ]; then
    echo "virtwire: $1" >&2
    exit 1
  fi
  set -- "virtwire: $1 (ignored: libvirt must not see $hook fail)"
  timeout 5 logger -t virtwire -p daemon.err -- "$1" 2>/dev/null || :
  echo "$1" >&2
  exit 0
}
reinstall="reinstall virtwire: apt-get install nodejs if Node is gone, then run virtwire's install.sh"
if [ ! -f "$node" ] || [ ! -x "$node" ]; then
  vw_cannot "cannot run Node at $node (missing or not executable); $reinstall"
fi
if [ ! -f "$bundle" ] || [ ! -r "$bundle" ]; then
  vw_cannot "cannot run $bundle (missing or unreadable); $reinstall"
fi
# Node's stderr goes to libvirt (fd 3); the shell's report of a crash
# ("Segmentation fault") goes nowhere: the outer subshell, whose stderr is
# /dev/null, waits for Node and exits normally with its status.
# A shim that has read stdin itself ($vw_have_xml=1) hands Node the XML it read.
# V8's lite mode (no optimizing compiler, lazy feedback): a hook runs for a
# fraction of a second, where optimizing never pays off, and it keeps ~10 MiB
# of peak RSS off every run (bench/hook-cost.ts). --no-expose-wasm, because
# lite mode otherwise warns on stderr, which libvirt would show.
vw_node() { ( ( exec "$node" --no-expose-wasm --lite-mode "$bundle" "$@" 2>&3 3>&- ); exit $? ) 2>/dev/null; }
exec 3>&2
if [ "${vw_have_xml-}" = 1 ]; then
  printf '%s\n' "$vw_xml" | vw_node "$@"
else
  vw_node "$@"
fi
rc=$?
exec 3>&-
[ "$rc" = 0 ] && exit 0
# The hook's own refusal (it printed one line); 126, 127 or a signal: Node
# itself could not run or crashed.
[ "$fail_closed" = 1 ] && [ "$rc" -lt 126 ] && exit "$rc"
vw_cannot "Node at $node failed running $bundle (exit status $rc); $reinstall"
