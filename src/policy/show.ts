/** Longest text shown whole in a message; longer text is cut and its length given. */
const MAX_SHOWN = 80;

const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

/** Text with every control character and line separator written as a \uXXXX escape. */
export function escapeUnprintable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * Text quoted for a one-line message: JSON escapes, plus escapes for what
 * JSON.stringify leaves raw but terminals or readers may take as a line break
 * or a control (DEL, C1 controls, U+2028, U+2029). Long text is cut.
 */
export function quote(text: string): string {
  const long = text.length > MAX_SHOWN;
  const shown = escapeUnprintable(JSON.stringify(long ? `${text.slice(0, MAX_SHOWN)}…` : text));
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
