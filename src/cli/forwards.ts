import { entryForwards, type Ledger } from '../state/ledger.js';
import { formatRange } from '../model/ports.js';
import { quoted } from '../errors.js';
import type { ResolvedForward } from '../model/forward.js';

/** One forward as `virtwire forwards --json` and `virtwire status --json` show it. */
export function forwardRow(f: ResolvedForward): Record<string, string> {
  return {
    proto: f.proto,
    listen: f.listen ?? (f.family === 4 ? '0.0.0.0' : '::'),
    hostPort: formatRange(f.host),
    guest: `${f.family === 6 ? `[${f.guestAddr}]` : f.guestAddr}:${formatRange(f.guest)}`,
    from: f.from.length ? f.from.join(',') : 'any',
    nic: f.nic,
    origin: f.origin,
  };
}

/** Rows for `virtwire forwards`: one per forward in the ledger. */
export function forwardRows(ledger: Ledger): Array<Record<string, string>> {
  return ledger.listVms().flatMap((e) => entryForwards(e).map((f) => ({ vm: e.name, uuid: e.uuid, state: e.state, ...forwardRow(f) })));
}

/** Plain aligned table; VM names are shown JSON-quoted only when they hold characters that would break the layout. */
export function renderTable(rows: Array<Record<string, string>>): string {
  if (rows.length === 0) return 'No forwards: no running VM is wired by a virtwire template.\n';
  const cols: Array<[string, string]> = [['VM', 'vm'], ['STATE', 'state'], ['PROTO', 'proto'], ['LISTEN', 'listen'], ['HOST PORT', 'hostPort'], ['-> GUEST', 'guest'], ['FROM', 'from'], ['ORIGIN', 'origin']];
  const cell = (r: Record<string, string>, k: string): string => {
    const v = r[k] ?? '';
    // Quoted when quoting changes it (quotes, controls, bidi) or it holds spaces.
    return k === 'vm' && (quoted(v) !== `"${v}"` || /\s/.test(v)) ? quoted(v) : v;
  };
  const width = (i: number): number => Math.max(...[cols[i]![0], ...rows.map((r) => cell(r, cols[i]![1]))].map((s) => [...s].length));
  const widths = cols.map((_, i) => width(i));
  const line = (vals: string[]): string => vals.map((v, i) => (i === vals.length - 1 ? v : v + ' '.repeat((widths[i] ?? 0) - [...v].length))).join('  ');
  return `${[line(cols.map((c) => c[0])), ...rows.map((r) => line(cols.map((c) => cell(r, c[1]))))].join('\n')}\n`;
}
