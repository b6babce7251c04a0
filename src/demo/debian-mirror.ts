// The host's Debian mirror, read from its apt sources: the guest image's IPv6
// variant fetches Debian 13's busybox from it (guest-image.ts), and the e2e
// suite's Debian 13 root is built from it (test/support/rootfs.ts).
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';

/**
 * The host's Debian archive URI (not debian-security / -ports / snapshot), from
 * /etc/apt/sources.list, *.list and deb822 *.sources. Throws if there is none.
 */
export function findDebianMirror(aptDir = '/etc/apt'): string {
  const texts: { file: string; text: string }[] = [];
  const read = (file: string): void => {
    try {
      texts.push({ file, text: readFileSync(file, 'utf8') });
    } catch {
      /* absent */
    }
  };
  read(path.join(aptDir, 'sources.list'));
  let names: string[] = [];
  try {
    names = readdirSync(path.join(aptDir, 'sources.list.d')).sort();
  } catch {
    /* absent */
  }
  for (const n of names) if (n.endsWith('.list') || n.endsWith('.sources')) read(path.join(aptDir, 'sources.list.d', n));

  const uris: string[] = [];
  for (const { file, text } of texts) {
    if (file.endsWith('.sources')) uris.push(...deb822Uris(text));
    else uris.push(...oneLineUris(text));
  }
  const usable = uris
    .map((u) => u.replace(/\/+$/, ''))
    .filter((u) => /^(https?|file):\/\//.test(u));
  const mirror = usable.find((u) => /\/debian$/.test(u)) ?? usable.find((u) => !/security|ports|snapshot/.test(u));
  if (!mirror) {
    throw new Error(
      `trixie root: no Debian mirror in ${aptDir}/sources.list or sources.list.d (found: ${uris.join(', ') || 'none'}). ` +
        'Fix: add a "deb http://<mirror>/debian <suite> main" source.',
    );
  }
  return mirror;
}

function deb822Uris(text: string): string[] {
  const out: string[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    let last = '';
    for (const line of stanza.split('\n')) {
      if (line.startsWith('#')) continue;
      if (/^\s/.test(line) && last) {
        fields.set(last, `${fields.get(last) ?? ''} ${line.trim()}`);
        continue;
      }
      const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line);
      if (m?.[1]) {
        last = m[1].toLowerCase();
        fields.set(last, (m[2] ?? '').trim());
      }
    }
    if ((fields.get('enabled') ?? 'yes').toLowerCase() === 'no') continue;
    if (!(fields.get('types') ?? '').split(/\s+/).includes('deb')) continue;
    out.push(...(fields.get('uris') ?? '').split(/\s+/).filter(Boolean));
  }
  return out;
}

function oneLineUris(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    const m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)/.exec(line);
    if (m?.[1]) out.push(m[1]);
  }
  return out;
}
