/**
 * An error a user (admin or VM owner) can cause. Its message is one line that
 * names the file / VM / NIC and says how to fix it; entry points print it
 * as-is, without a stack trace.
 */
export class UserError extends Error {
  override name = 'UserError';
}

/** One line, safe for logs and libvirt's error message: no raw newlines or control characters. */
export function oneLine(text: string): string {
  return text.replace(/[\r\n\t\u0000-\u001f\u007f]+/g, ' ').trim();
}

/** Quote a VM / file name for messages so quotes, newlines and spaces stay visible and cannot forge lines. */
export function quoted(name: string): string {
  return JSON.stringify(name);
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
