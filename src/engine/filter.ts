// qemu `migrate` and `restore`: libvirt's only filter operations (the hook's
// stdout replaces the domain XML; empty means unchanged). virtwire re-applies
// this host's part — the record of what its templates decide — to the
// incoming XML and leaves every other byte as it came.
import { parseXmlDocument } from '../xml/document.js';
import { parseDomain } from '../xml/domain.js';
import { writeRecord } from '../rewrite/domain.js';
import { planVm } from './reserve.js';
import { recordOf } from './record.js';
import type { HookContext } from './context.js';
import { UserError, escapeUnsafe } from '../errors.js';

/**
 * The incoming XML with this host's decisions recorded, or undefined when it
 * needs no change. Throws UserError (which cancels the migration or restore)
 * when this host's templates cannot wire it: its start would be refused anyway.
 */
export function filterIncoming(ctx: HookContext, xml: string): string | undefined {
  let doc;
  try {
    doc = parseXmlDocument(xml);
  } catch (err) {
    throw new UserError(`the domain XML on stdin is not well-formed XML: ${escapeUnsafe((err as Error).message)}`);
  }
  const domain = parseDomain(xml, 'the domain XML on stdin');
  const planned = planVm(domain, ctx);
  writeRecord(doc, planned ? recordOf(planned.plan) : []);
  const out = String(doc);
  return out === xml ? undefined : out;
}
