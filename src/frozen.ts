/**
 * Freezes a value all the way down and returns it: for a parsed object a
 * cache hands out again and again, so a caller that changed it would change
 * every later read. Callers build new objects from it (spread) instead.
 */
export function deepFrozen<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFrozen(v);
  }
  return value;
}
