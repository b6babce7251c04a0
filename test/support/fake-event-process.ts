// A stand-in for a `virsh event` process (src/libvirt/events.ts EventProcess):
// the test pushes recorded output and ends it.
import type { EventProcess } from '../../src/libvirt/events.js';

export class FakeProcess implements EventProcess {
  static nextPid = 1000;
  readonly pid = FakeProcess.nextPid++;
  killed = false;
  private out?: (b: Buffer) => void;
  private err?: (b: Buffer) => void;
  private exitCb?: (why: string) => void;
  private ended = false;
  constructor(readonly argv: readonly string[]) {}
  onStdout(cb: (b: Buffer) => void) { this.out = cb; }
  onStderr(cb: (b: Buffer) => void) { this.err = cb; }
  onExit(cb: (why: string) => void) { this.exitCb = cb; }
  stdout(b: Buffer | string) { this.out?.(Buffer.from(b)); }
  stderr(b: Buffer | string) { this.err?.(Buffer.from(b)); }
  exit(why = 'exit status 1') {
    if (this.ended) return;
    this.ended = true;
    this.exitCb?.(why);
  }
  kill() {
    this.killed = true;
    // Like a real child: the exit is reported later, not inside kill().
    queueMicrotask(() => this.exit('killed by SIGKILL'));
  }
}
