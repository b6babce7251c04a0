import type { ResolvedForward } from '../model/forward.js';

/** The forwards one VM gets. */
export interface VmPlan {
  uuid: string;
  name: string;
  forwards: ResolvedForward[];
}
