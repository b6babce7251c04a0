#!/bin/sh
# Renders an installed shim: hooks/render.sh NAME NODE DIST [RUNDIR LOGFILE] > FILE,
# where NAME is qemu, network or virtwire, NODE the absolute path of Node,
# DIST the directory of the bundles, RUNDIR virtwire's run-time directory and
# LOGFILE its log (defaults /run/virtwire and /var/log/virtwire.log, where the
# hooks' Node code keeps them: only the shim tests point them elsewhere). The hook shims get hooks/run-node.sh in place of
# their "# @RUN_NODE@" line. install.sh and the tests render the same way.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
name=$1 node=$2 dist=$3 rundir=${4:-/run/virtwire} logfile=${5:-/var/log/virtwire.log}
case "$name" in qemu|network|virtwire) ;; *) echo "render.sh: unknown shim $name" >&2; exit 2 ;; esac
# The paths go into shell code: plain absolute paths only.
for p in "$node" "$dist" "$rundir" "$logfile"; do
  case "$p" in
    /*) ;;
    *) echo "render.sh: $p is not an absolute path" >&2; exit 2 ;;
  esac
  case "$p" in
    *[!A-Za-z0-9._+/-]*) echo "render.sh: $p has characters other than A-Z a-z 0-9 . _ + - /; install Node and virtwire under a plain path" >&2; exit 2 ;;
  esac
done
sed -e "/^# @RUN_NODE@\$/{r $here/run-node.sh" -e 'd;}' -e "s|@NODE@|$node|g" -e "s|@LIBDIR@|$dist|g" -e "s|@RUNDIR@|$rundir|g" -e "s|@LOGFILE@|$logfile|g" "$here/$name"
