// VLANs as templates give them and host drivers apply them.

/** Access: untagged on one VLAN. Trunk: the tagged VLANs, and the one untagged frames belong to (if any). */
export type VlanSpec =
  | { access: number }
  | { tagged: number[]; native?: number };

/** Ids as the shortest list of runs: [10, 20, 21, 22] → ["10", "20-22"]. */
export function vidRuns(ids: readonly number[]): string[] {
  const runs: string[] = [];
  let start: number | undefined;
  let prev: number | undefined;
  for (const id of [...ids].sort((a, b) => a - b)) {
    if (start !== undefined && prev !== undefined && id === prev + 1) { prev = id; continue; }
    if (start !== undefined) runs.push(start === prev ? `${start}` : `${start}-${prev}`);
    start = prev = id;
  }
  if (start !== undefined) runs.push(start === prev ? `${start}` : `${start}-${prev}`);
  return runs;
}

/** "VLAN 100", "trunk 20-30 with native VLAN 10" (the native one untagged). */
export function describeVlan(v: VlanSpec): string {
  if ('access' in v) return `VLAN ${v.access}`;
  return `trunk ${vidRuns(v.tagged).join(',')}${v.native === undefined ? '' : ` with native VLAN ${v.native}`}`;
}
