import type { ResolvedForward } from '../model/forward.js';
import type { LinkObject, TapVlan, VfSettings } from '../model/host.js';

/** A NIC a template wires, and the binding that serves it. */
export interface PlannedNic {
  mac: string;
  /** The template that won the NIC. */
  template: string;
  binding: string;
  /** The network it is (or, once its binding rewrote it, will be) on. */
  network?: string;
  /** The network it was matched on, when its binding moves it elsewhere (recorded: DomainNic.from). */
  from?: string;
  /** What its binding attaches it to, for bindings that rewrite the NIC ("bridge br0, VLAN 100"). */
  attached?: string;
}

/** What one VM gets: its wired NICs, and the forwards they hold (each forward names its NIC). */
export interface VmPlan {
  uuid: string;
  name: string;
  nics: PlannedNic[];
  forwards: ResolvedForward[];
  /** Host links its NICs need while it runs, by NIC MAC. */
  links: Array<{ nic: string; link: LinkObject }>;
  /** VLANs to set on NICs' taps at qemu start, by NIC MAC. */
  tapVlans: Array<{ nic: string; tapVlan: TapVlan }>;
  /** VFs its NICs hold (sriov), by NIC MAC. */
  vfs: Array<{ nic: string; vf: VfSettings }>;
  /** Drop-in executables of its NICs' bindings, with the environment they get, by NIC MAC. */
  dropins: Array<{ nic: string; dropin: { hooks: Array<'start' | 'release'>; env: Record<string, string> } }>;
}
