// "[e2e timing] what: 1.23 s" lines in the e2e output, for reading a run (never asserted on).
export const timing = (what: string, ms: number): void => console.log(`[e2e timing] ${what}: ${(ms / 1000).toFixed(2)} s`);

/** Runs f and prints how long it took. */
export async function timed<T>(what: string, f: () => Promise<T>): Promise<T> {
  const t = Date.now();
  const r = await f();
  timing(what, Date.now() - t);
  return r;
}
