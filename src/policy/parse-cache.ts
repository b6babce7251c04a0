// Parsed templates, kept between hook runs. Parsing YAML is most of what a
// VM's `prepare` costs (a 200-forward template: ~100 ms of the ~350); the
// parse of a file is a pure function of its path and bytes, so it is reused
// while those stay the same. Trust is never cached: every file is still
// opened and checked (owner, mode, directories) and read each time; only
// the parse of bytes seen before is skipped.
import { readTrustedFile } from './trust.js';
import { writeTextAtomic } from '../atomic.js';
import { BUILD } from '../version.js';

/** Bounds the file: a few hundred KiB at most for templates of a few KiB. */
const MAX_ENTRIES = 64;

/** Entries are JSON: what is cached must survive encode/decode (test/unit/parse-cache.test.ts). */
type Entries = Record<string, unknown>;

/** JSON with BigInt (parsed CIDRs hold their bounds as BigInt) as {"$bigint": "digits"}. */
export function encode(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? { $bigint: v.toString() } : v));
}

export function decode(text: string): unknown {
  // A walk after a plain parse: ~3× faster than JSON.parse's reviver (0.23 against 0.65 ms for a
  // 200-forward template's cache), which a served start pays on every read of the cache.
  return revive(JSON.parse(text));
}

function revive(v: unknown): unknown {
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const r = revive(v[i]);
      if (r !== v[i]) v[i] = r;
    }
    return v;
  }
  if (v === null || typeof v !== 'object') return v;
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  const b = o.$bigint;
  if (typeof b === 'string' && keys.length === 1 && /^-?\d+$/.test(b)) return BigInt(b);
  // Written back only when it changed (a BigInt): a plain parse's own "__proto__" key is left as it is.
  for (const k of keys) {
    const r = revive(o[k]);
    if (r !== o[k]) o[k] = r;
  }
  return o;
}

export class ParseCache {
  private readonly before: Entries;
  private readonly used: Entries = {};
  private hits = 0;

  /** `file`: where the cache lives (root's run dir); undefined: no cache, every parse is done. */
  constructor(private readonly file: string | undefined) {
    this.before = file ? readEntries(file) : {};
  }

  /** The parse of `text` (read from `path`) — cached, or `parse()` now. */
  get<T>(kind: string, path: string, text: string, parse: () => T): T {
    // The bytes themselves, not a digest: exact, and no node:crypto to load (a hook pays for every module).
    const key = `${BUILD}\0${kind}\0${path}\0${text}`;
    if (key in this.before) {
      this.hits++;
      this.used[key] = this.before[key];
      return this.before[key] as T;
    }
    const value = parse();
    this.used[key] = value;
    return value;
  }

  /**
   * Keeps the entries this run used, then the most recent others up to
   * MAX_ENTRIES (a template switched back and forth, as in an edit and its
   * undo, is parsed once) — written only when that differs from what was
   * read. A cache that cannot be written is no error: the next run parses again.
   */
  save(): void {
    if (!this.file) return;
    const used = Object.keys(this.used);
    if (this.hits === used.length && used.every((k, i) => Object.keys(this.before)[i] === k)) return;
    const kept: Entries = { ...this.used };
    for (const [k, v] of Object.entries(this.before)) {
      if (Object.keys(kept).length >= MAX_ENTRIES) break;
      if (!(k in kept)) kept[k] = v;
    }
    try {
      writeTextAtomic(this.file, encode(kept), "virtwire's parse cache", '/run');
    } catch {
      // a cache
    }
  }
}

/** The cache's entries, or none when it is absent, unreadable, or not root's alone to write (readTrustedFile). */
function readEntries(file: string): Entries {
  try {
    const v = decode(readTrustedFile(file, 16 * 1024 * 1024));
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Entries) : {};
  } catch {
    return {};
  }
}
