import type { Binding } from '../types.js';
import { planNat, natNetworkRefusal } from './plan.js';

export const nat: Binding = {
  name: 'nat',
  version: 1,
  hostPlan: (input) => ({ forwards: planNat(input) }),
  networkRefusal: natNetworkRefusal,
};
