import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, readlinkSync, statSync, type Stats } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { UserError, quoted, shellWord } from '../errors.js';

/** Templates and virtwire.yaml are a few KiB; anything near this is not one of them. */
export const MAX_POLICY_FILE_BYTES = 1024 * 1024;

/** Linux's O_CLOEXEC (Node's fs.constants lacks it; libuv sets it anyway — said here so it is never lost). */
const O_CLOEXEC = 0o2000000;
/**
 * O_NONBLOCK: opening a FIFO must not wait for a writer (it would hang the
 * hook, and with it libvirt); O_NOCTTY: a terminal device never becomes ours.
 */
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY | O_CLOEXEC;

export interface TrustOptions {
  /**
   * Check owner and permissions of the file and of every directory on its
   * real path. Default: when running as root. An unprivileged run (`virtwire
   * templates check` as a user, tests) trusts what it can read; the
   * regular-file and size checks always apply.
   */
  ownership?: boolean;
}

/**
 * Reads a file hooks act on as root (a template, virtwire.yaml), trusting it
 * only if only root can change what it says: a regular file (never a FIFO,
 * device or directory), owned by root, not group/world-writable, at most
 * maxBytes, in directories that are all root-owned and not group/world-
 * writable — those of the path as given and of every symlink's target, up
 * to /. The file is opened first and checked through its descriptor, and
 * the path checked is proved to be the file opened (same device and inode),
 * so nothing can be swapped in between. Throws a UserError naming the file
 * and the fix; an absent file throws the plain ENOENT error (callers tell
 * "absent" from "refused" by its code).
 */
export function readTrustedFile(file: string, maxBytes: number, opts: TrustOptions = {}): string {
  const { fd, st } = openTrusted(file, opts, 'reads');
  try {
    if (st.size > maxBytes) throw new UserError(`${file} is too large (${st.size} bytes, at most ${maxBytes}); a template or virtwire.yaml is a few KiB — is it the right file?`);
    return readAll(fd, file, maxBytes);
  } finally {
    closeSync(fd);
  }
}

/**
 * Opens `file` and checks it through its descriptor as readTrustedFile
 * describes (regular file; with ownership, root's all the way to / and the
 * path proved to be the file opened). The caller closes the descriptor.
 */
function openTrusted(file: string, opts: TrustOptions, verb: 'reads' | 'runs'): { fd: number; st: Stats } {
  const ownership = opts.ownership ?? process.getuid?.() === 0;
  const fd = openOrExplain(file);
  try {
    const st = fstatSync(fd);
    const kind = fileKind(st);
    if (kind !== 'regular file') throw new UserError(`${file} is ${kind}, not a regular file; virtwire ${verb} only regular files (replace it with one, or remove it)`);
    if (ownership) {
      refuseIfUntrusted(file, st);
      const real = walkTrusted(file);
      const rst = statSync(real);
      if (rst.dev !== st.dev || rst.ino !== st.ino) throw new UserError(`${file} changed while it was being checked (its path now leads to another file); find out what rewrites it, then retry`);
    }
    return { fd, st };
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

/**
 * The same trust as readTrustedFile, for a file virtwire runs (a drop-in
 * executable): regular, root's, not group/world-writable, in directories
 * only root can change, up to /; and executable. Reads nothing. Throws a
 * UserError naming the file and the fix; an absent file, plain ENOENT.
 */
export function assertTrustedExecutable(file: string, opts: TrustOptions & { executable?: boolean } = {}): void {
  const { fd, st } = openTrusted(file, opts, 'runs');
  closeSync(fd);
  if (opts.executable !== false && (st.mode & 0o111) === 0) throw new UserError(`${file} is not executable; make it so (chmod 755 ${file}) or remove it`);
}

function openOrExplain(file: string): number {
  try {
    return openSync(file, OPEN_FLAGS);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      // A symlink whose target is gone is a mistake to report, not an absent file.
      const link = lstatOrUndefined(file);
      if (link?.isSymbolicLink()) throw new UserError(`${quoted(file)} is a symlink to ${quoted(readlinkSync(file))}, which does not exist; fix the link or remove it`);
      throw err;
    }
    throw new UserError(`cannot open ${file}: ${(err as Error).message}`);
  }
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

function fileKind(st: Stats): string {
  if (st.isFile()) return 'regular file';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isDirectory()) return 'a directory';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/**
 * Resolves `file` the way open(2) does, component by component, and checks
 * every directory it passes through — the one holding each symlink and those
 * of each target, up to /. Returns the real path of the file.
 */
function walkTrusted(file: string): string {
  try {
    let todo = resolve(file).split('/');
    let cur = '/';
    refuseIfUntrusted(file, statSync(cur), cur);
    let links = 0;
    while (todo.length > 0) {
      const c = todo.shift() as string;
      if (c === '' || c === '.') continue;
      if (c === '..') { cur = join(cur, '..'); continue; } // checked on the way down
      const next = join(cur, c);
      const st = lstatSync(next);
      if (st.isSymbolicLink()) {
        if (++links > 40) throw new UserError(`cannot open ${file}: too many levels of symbolic links`);
        const target = readlinkSync(next);
        if (isAbsolute(target)) cur = '/';
        todo = [...target.split('/'), ...todo];
        continue;
      }
      cur = next;
      if (todo.some((x) => x !== '' && x !== '.')) refuseIfUntrusted(file, st, cur);
    }
    return cur;
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(`${file} changed while it was being checked (${(err as Error).message}); find out what rewrites it, then retry`);
  }
}

/** One line naming the file (and the directory at fault) and the command that fixes it. */
function refuseIfUntrusted(file: string, st: Stats, dir?: string): void {
  const target = dir ?? file;
  const problems: string[] = [];
  const fixes: string[] = [];
  if (st.uid !== 0) {
    problems.push(`owned by uid ${st.uid} (not root)`);
    fixes.push(`chown root ${shellWord(target, 'PATH')}`);
  }
  const w = st.mode & 0o022;
  if (w !== 0) {
    problems.push(`${w === 0o022 ? 'group- and world' : w === 0o020 ? 'group' : 'world'}-writable (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')})`);
    fixes.push(`chmod go-w ${shellWord(target, 'PATH')}`);
  }
  if (problems.length === 0) return;
  const subject = dir ? `directory ${dir} on its path is ${problems.join(' and ')}` : `it is ${problems.join(' and ')}`;
  const elsewhere = 'keep the file in a directory only root can write to';
  // A sticky shared directory such as /tmp is meant to be world-writable: only moving the file helps.
  const fix = !dir ? fixes.join(' && ') : (st.mode & 0o1000) !== 0 ? elsewhere : `${fixes.join(' && ')}, or ${elsewhere}`;
  throw new UserError(`${file} is not trusted: ${subject}; fix: ${fix}`);
}

function readAll(fd: number, file: string, maxBytes: number): string {
  const buf = Buffer.alloc(Math.min(maxBytes, 64 * 1024) + 1);
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const n = readSync(fd, buf, 0, buf.length, null);
    if (n === 0) break;
    total += n;
    if (total > maxBytes) throw new UserError(`${file} is too large (more than ${maxBytes} bytes); a template or virtwire.yaml is a few KiB — is it the right file?`);
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  return Buffer.concat(chunks).toString('utf8');
}
