import { quoted } from '../errors.js';

/** Longest text shown whole in a message; longer text is cut and its length given. */
const MAX_SHOWN = 80;

/**
 * A value quoted for a one-line message (errors.ts quoted(): JSON escapes
 * plus controls, line separators and bidi controls escaped); long text is cut.
 */
export function quote(text: string): string {
  const long = text.length > MAX_SHOWN;
  const shown = quoted(long ? `${text.slice(0, MAX_SHOWN)}…` : text);
  return long ? `${shown} (${text.length} characters)` : shown;
}

/** "string \"x\"", "number 5", "a list"… for "found …" in messages. */
export function describe(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'string') return `string ${quote(value)}`;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return `${typeof value} ${String(value)}`;
  if (value instanceof Date) return 'a timestamp';
  if (value instanceof Uint8Array) return 'binary data';
  return 'a mapping';
}
