import type { ResolvedForward } from '../model/forward.js';

/** A NIC a template wires, and the binding that serves it. */
export interface PlannedNic {
  mac: string;
  /** The template that won the NIC. */
  template: string;
  binding: string;
  network?: string;
}

/** What one VM gets: its wired NICs, and the forwards they hold (each forward names its NIC). */
export interface VmPlan {
  uuid: string;
  name: string;
  nics: PlannedNic[];
  forwards: ResolvedForward[];
}
