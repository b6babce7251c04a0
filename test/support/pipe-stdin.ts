// Runs a hook as libvirt does: its input on an anonymous pipe (Node's stdio
// 'pipe' is a socketpair, which the qemu shim's served prepare tells apart).
import { spawn, type ChildProcess } from 'node:child_process';

// Perl (Debian's perl-base is Essential): makes the pipe, leaves the writing
// to a grandchild, then execs argv on the read end. The writer is no child
// of argv's process: like libvirt, which writes from its own, it sends that
// process no SIGCHLD (the shim's wait for its answer ends on one: its clock's).
const RUN_ON_PIPE = `
my $in = shift @ARGV;
my $hold = shift @ARGV;
pipe(my $r, my $w) or die "pipe: $!";
my $pid = fork() // die "fork: $!";
if ($pid == 0) {
  my $writer = fork() // die "fork: $!";
  if ($writer == 0) { close $r; binmode $w; print $w $in; if ($hold) { close STDERR; select(undef, undef, undef, $hold); } close $w or die "write: $!"; exit 0; }
  exit 0;
}
waitpid($pid, 0);
close $w;
open(STDIN, '<&', $r) or die "stdin: $!";
close $r;
exec { $ARGV[0] } @ARGV or die "exec $ARGV[0]: $!";
`;

/**
 * Spawns argv with `input` on an anonymous pipe as its stdin, written while
 * argv runs (a grandchild writes it); the child's pid is argv's. `input` may
 * be up to 128 KiB (it goes as one argument). No environment unless `env`
 * gives one. `holdS`: the writer keeps the pipe open that many seconds
 * after writing (a libvirt that never finishes writing).
 */
export function spawnOnPipe(argv: readonly string[], input: string, opts: { env?: NodeJS.ProcessEnv; stdout?: 'ignore' | 'pipe'; holdS?: number } = {}): ChildProcess {
  return spawn('perl', ['-e', RUN_ON_PIPE, input, String(opts.holdS ?? 0), ...argv], { env: opts.env ?? {}, stdio: ['ignore', opts.stdout ?? 'ignore', 'pipe'] });
}
