/**
 * An error a user (admin or VM owner) can cause. Its message is one line that
 * names the file / VM / NIC and says how to fix it; entry points print it
 * as-is, without a stack trace.
 */
export class UserError extends Error {
  override name = 'UserError';
}

/**
 * Characters that break a line or reorder what a reader sees: C0/C1 controls,
 * DEL, the Unicode line and paragraph separators, and bidi controls (which
 * can make a log line read as something it is not).
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** One line, safe for logs and libvirt's error message: unsafe characters become spaces. */
export function oneLine(text: string): string {
  return text.replace(new RegExp(`${UNSAFE.source}+`, 'g'), ' ').trim();
}

/**
 * Quote a VM / network / file name for messages: JSON string syntax, with
 * every unsafe character (see UNSAFE) escaped as \uXXXX, so quotes, newlines
 * and bidi tricks stay visible and cannot forge or reorder a line.
 */
export function quoted(name: string): string {
  return escapeUnsafe(JSON.stringify(name));
}

/** Every unsafe character (see UNSAFE) written as a \uXXXX escape; the rest as is. */
export function escapeUnsafe(text: string): string {
  return text.replace(UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Characters a shell word may hold unquoted, in a command shown to a user. */
const SHELL_SAFE = /^[A-Za-z0-9._+:@%/=,-]+$/;

/**
 * A name as one shell word in a suggested command: as is when it needs no
 * quoting, else POSIX single-quoted when it is printable ASCII, else the
 * placeholder (a user must never paste a command whose meaning depends on
 * characters they cannot see).
 */
export function shellWord(value: string, placeholder: string): string {
  if (SHELL_SAFE.test(value)) return value;
  if (/^[\x20-\x7e]+$/.test(value)) return `'${value.replace(/'/g, `'\\''`)}'`;
  return placeholder;
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
