// libvirt networks `virtwire apply` defined (the isolated binding's, when
// missing): the only networks virtwire ever removes, and only when no domain
// names them any more. One JSON file in the persistent state dir, written
// under the reservation lock; networks outlive a reboot, so /run will not do.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UUID } from '../model/ids.js';
import { writeJsonAtomic } from '../atomic.js';

export interface OwnedNetwork {
  name: string;
  /** The template that asked for it, when virtwire defined it. */
  template: string;
  definedAt: string;
}

/** By network UUID: a network of that name defined by someone else later is never taken for virtwire's. */
export type OwnedNetworks = Record<string, OwnedNetwork>;

export class OwnedNetworkStore {
  constructor(readonly dir: string) {}

  get file(): string {
    return join(this.dir, 'networks.json');
  }

  /** The networks virtwire defined; an absent file is none. A damaged one throws: ownership is never guessed. */
  read(): OwnedNetworks {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw err;
    }
    const v = JSON.parse(text) as unknown;
    const bad = (): never => { throw new Error(`${this.file} is damaged; virtwire removes none of the networks it lists until it is fixed or removed`); };
    if (typeof v !== 'object' || v === null || Array.isArray(v)) bad();
    const nets = (v as { networks?: unknown }).networks;
    if (typeof nets !== 'object' || nets === null) bad();
    for (const [uuid, n] of Object.entries(nets as Record<string, unknown>)) {
      const o = n as Partial<OwnedNetwork> | null;
      if (!UUID.test(uuid) || typeof o?.name !== 'string' || typeof o.template !== 'string' || typeof o.definedAt !== 'string') bad();
    }
    return nets as OwnedNetworks;
  }

  write(networks: OwnedNetworks): void {
    writeJsonAtomic(this.file, { schema: 1, networks }, "virtwire's network store", '/var/lib');
  }
}
