import { lstatSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { UserError } from '../errors.js';

/**
 * Hooks run as root and act on what these files say, so only files that
 * only root can change are trusted: owned by root, not group/world-writable,
 * and the same for the directory holding them.
 */
export function assertTrustedFile(file: string): void {
  const st = lstatSync(file); // throws ENOENT for the caller to handle
  if (st.isSymbolicLink()) {
    const target = statSync(file);
    checkMode(file, target.uid, target.mode);
  } else checkMode(file, st.uid, st.mode);
  const dir = statSync(dirname(file));
  checkMode(dirname(file), dir.uid, dir.mode);
}

function checkMode(path: string, uid: number, mode: number): void {
  if (process.getuid?.() !== 0) return; // an unprivileged CLI run (tests, `templates check` as a user) trusts what it can read
  if (uid !== 0 || (mode & 0o022) !== 0) {
    throw new UserError(`${path} is not trusted: it must be owned by root and not group/world-writable (chown root:root ${JSON.stringify(path)} && chmod go-w ${JSON.stringify(path)})`);
  }
}
