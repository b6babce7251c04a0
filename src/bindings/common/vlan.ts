// `vlan:` of a template, shared by the bindings that put a NIC on a VLAN
// (bridge, ovs, macvtap): an access VLAN (`vlan: 100`) or a trunk
// (`vlan: {tagged: [10, "20-30"], native: 10}`).
import type { Node } from 'yaml';
import { didYouMean, type YamlFile } from '../../policy/yaml-doc.js';
import { quote } from '../../model/show.js';
import type { ElementSpec } from '../../xml/document.js';
import type { VlanSpec } from '../../model/vlan.js';

export type { VlanSpec } from '../../model/vlan.js';
export { describeVlan, vidRuns } from '../../model/vlan.js';

export const VLAN_KEYS = ['tagged', 'native'] as const;
/** IEEE 802.1Q: 0 is "priority only" and 4095 is reserved. */
const MIN_VID = 1;
const MAX_VID = 4094;

function vidProblem(v: unknown): string | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v >= MIN_VID && v <= MAX_VID ? undefined : `a VLAN id is a whole number from ${MIN_VID} to ${MAX_VID}`;
}

/** Reads `vlan:`; reports problems at their node and returns undefined if there are any. */
export function readVlan(y: YamlFile, node: Node | null): VlanSpec | undefined {
  const before = y.problems.length;
  const v = y.scalar(node);
  if (v !== undefined && v !== null) {
    const p = vidProblem(v);
    if (p) { y.report(node, `vlan: ${p}, found ${y.kindOf(node)}; or a trunk: {tagged: [10, "20-30"], native: 10}`); return undefined; }
    return { access: v as number };
  }
  const out: { tagged: number[]; native?: number } = { tagged: [] };
  let sawTagged = false;
  for (const [key, keyNode, value] of y.entries(node, 'vlan (a VLAN id, or {tagged: [...], native: N})')) {
    if (key === 'tagged') {
      sawTagged = true;
      for (const item of y.items(value, 'vlan.tagged')) {
        const ids = readVidOrRange(y, item);
        if (ids) out.tagged.push(...ids);
      }
    } else if (key === 'native') {
      const n = y.scalar(value);
      const p = vidProblem(n);
      if (p) y.report(value, `vlan.native: ${p}, found ${y.kindOf(value)}`);
      else out.native = n as number;
    } else y.report(keyNode, `unknown key ${quote(`vlan.${key}`)}${didYouMean(key, VLAN_KEYS)}; allowed: ${VLAN_KEYS.join(', ')}`);
  }
  if (y.problems.length > before) return undefined;
  if (!sawTagged || out.tagged.length === 0) {
    y.report(node, 'vlan: a trunk needs tagged: [VLAN ids or "from-to" ranges]; for one untagged VLAN write vlan: N');
    return undefined;
  }
  const tagged = [...new Set(out.tagged)].sort((a, b) => a - b);
  return { tagged: tagged.filter((t) => t !== out.native), ...(out.native === undefined ? {} : { native: out.native }) };
}

function readVidOrRange(y: YamlFile, item: Node): number[] | undefined {
  const v = y.scalar(item);
  if (typeof v === 'number') {
    const p = vidProblem(v);
    if (p) { y.report(item, `vlan.tagged: ${p}, found ${v}`); return undefined; }
    return [v];
  }
  const m = typeof v === 'string' ? /^(\d{1,4})-(\d{1,4})$/.exec(v) : null;
  const from = Number(m?.[1]);
  const to = Number(m?.[2]);
  if (!m || vidProblem(from) || vidProblem(to) || from > to) {
    y.report(item, `vlan.tagged: entries are VLAN ids (${MIN_VID}-${MAX_VID}) or ranges "from-to" with from <= to, found ${y.kindOf(item)}`);
    return undefined;
  }
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

/**
 * libvirt's <vlan> (formatdomain "Setting VLAN tag"): one <tag> for access;
 * trunk='yes' with the native VLAN's tag marked nativeMode='untagged'.
 */
export function vlanElement(v: VlanSpec): ElementSpec {
  if ('access' in v) return { name: 'vlan', children: [{ name: 'tag', attrs: { id: String(v.access) } }] };
  const tags: ElementSpec[] = v.tagged.map((id) => ({ name: 'tag', attrs: { id: String(id) } }));
  if (v.native !== undefined) tags.unshift({ name: 'tag', attrs: [['id', String(v.native)], ['nativeMode', 'untagged']] });
  return { name: 'vlan', attrs: { trunk: 'yes' }, children: tags };
}
