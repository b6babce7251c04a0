// Whether libvirt runs virtwire's network hook: its file's execute bits.
//
// libvirt runs every executable regular file in hooks/network.d for every
// network operation, and a VM's start and destroy are two of them (the NIC's
// `port-created` and `port-deleted`): a fork of the daemon and an exec each
// (3–15 ms), for a hook that acts only when a network starts or is updated
// and exits at once otherwise. A serving watcher covers those two moments
// itself (libvirt's network events, and `nft monitor` on libvirt's chains),
// so while it does, it stands the hook down — mode 0644: libvirt skips a
// file that is not executable — and puts it back (0755) whenever it may no
// longer cover them: libvirt lost, the monitor down, the watcher stopping.
// The watcher's unit does the same after any stop (ExecStopPost), a boot
// does it before libvirtd starts (tmpfiles.d, install.sh), and a hook run
// of Node that finds no watcher serving does it too.
//
// The catch, said where it matters (README): libvirt notes at its start and
// at each reload (SIGHUP) whether a driver has any hook at all. Standing
// down the only network hook across such a moment leaves libvirtd without
// network hooks until its next reload or restart, which is harmless while
// the watcher runs, and a gap once it stops for good. The watcher arms the
// file the moment libvirtd goes away, before a new one can start.
import { closeSync, constants, fchmodSync, fstatSync, lstatSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { errorMessage } from '../errors.js';

/** The file install.sh installs (rendered hooks/network). */
export function networkHookFile(libvirtHooksDir: string): string {
  return join(libvirtHooksDir, 'network.d', 'virtwire');
}

/** The mode of each state: libvirt runs the file only when armed. */
export const ARMED_MODE = 0o755;
export const STOOD_DOWN_MODE = 0o644;

/** How hooks/network begins (its second line): the file is virtwire's, not someone's own hook by that name. */
const SIGNATURE = "# virtwire's libvirt network hook";

export type NetworkHookState = 'armed' | 'stood down' | 'absent';

/** The fix for a hook file virtwire leaves alone (a refusal below), for the lines that report one. */
export const REFUSED_HOOK_FIX = "run virtwire's install.sh again, which writes it root's and 0755; a hook of your own goes in network.d under another name";

/**
 * The hook's state, or why virtwire will not touch the file: it is no
 * regular file, not root's, writable by others, or not virtwire's hook.
 */
export function networkHookState(file: string): NetworkHookState | { refused: string } {
  const opened = openHook(file);
  if (opened === 'absent' || 'refused' in opened) return opened;
  closeSync(opened.fd);
  return (opened.mode & 0o111) === 0 ? 'stood down' : 'armed';
}

/**
 * Arms (`armed` true) or stands down virtwire's network hook. Returns what
 * changed ('armed', 'stood down'), 'unchanged', 'absent', or why the file
 * was left alone. Never throws: a hook that cannot be switched stays as it
 * is, which is always safe when armed and merely slower.
 */
export function switchNetworkHook(file: string, armed: boolean): NetworkHookState | 'unchanged' | { refused: string } {
  const opened = openHook(file);
  if (opened === 'absent' || 'refused' in opened) return opened;
  try {
    const want = armed ? ARMED_MODE : STOOD_DOWN_MODE;
    if ((opened.mode & 0o7777) === want) return 'unchanged';
    // Through the descriptor: the file checked is the file changed.
    fchmodSync(opened.fd, want);
    return armed ? 'armed' : 'stood down';
  } catch (err) {
    return { refused: `cannot change its mode: ${errorMessage(err)}` };
  } finally {
    closeSync(opened.fd);
  }
}

function openHook(file: string): { fd: number; mode: number } | 'absent' | { refused: string } {
  try {
    if (!lstatSync(file).isFile()) return { refused: 'it is not a regular file' };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
    return { refused: errorMessage(err) };
  }
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'absent' : { refused: errorMessage(err) };
  }
  try {
    const st = fstatSync(fd);
    let why: string | undefined;
    if (!st.isFile()) why = 'it is not a regular file';
    else if (st.uid !== 0) why = `it is owned by uid ${st.uid}, not root`;
    else if ((st.mode & 0o022) !== 0) why = 'it is writable by others than root';
    else if (!readHead(fd).split('\n', 3).some((l) => l.startsWith(SIGNATURE))) why = 'it is not virtwire\'s network hook';
    if (why === undefined) return { fd, mode: st.mode };
    closeSync(fd);
    return { refused: why };
  } catch (err) {
    closeSync(fd);
    return { refused: errorMessage(err) };
  }
}

function readHead(fd: number): string {
  const buf = Buffer.alloc(256);
  const n = readSync(fd, buf, 0, buf.length, 0);
  return buf.subarray(0, n).toString('utf8');
}
