// What the suite tried and what held (issue 9's "figures"), recorded by the
// tests as they pass and rendered into README.md's figures table by
// figures-setup.ts at the end of a full run — never typed by hand.
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const FIGURES_FILE = join(dirname(fileURLToPath(import.meta.url)), '..', '.results', 'figures.jsonl');

export interface Figure {
  kind: string;
  what: string;
  /** Where it held: "libvirt 9 (iptables)", "libvirt 11 (nftables)", or "unit". */
  where: string;
  /** For repeated trials (property runs, lock increments): how many. */
  runs?: number;
}

/** Short names for the e2e modes, as the table shows them. */
export function whereOf(mode: string): string {
  if (/libvirt 9/.test(mode)) return 'libvirt 9 (iptables)';
  if (/libvirt 11/.test(mode)) return 'libvirt 11 (nftables)';
  return mode;
}

/** Call at the end of a test, after its assertions: a figure is a case that held. */
export function recordFigure(kind: string, what: string, where: string, runs?: number): void {
  mkdirSync(dirname(FIGURES_FILE), { recursive: true });
  const f: Figure = { kind, what, where: whereOf(where), ...(runs === undefined ? {} : { runs }) };
  appendFileSync(FIGURES_FILE, `${JSON.stringify(f)}\n`);
}
