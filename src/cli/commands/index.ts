// Every `virtwire` command, in the order `virtwire --help` and README's
// "Commands" list them (a unit test keeps the three in step). Each file
// exports its `command`: name, help, options and run.
import type { Command } from '../command.js';
import { command as forwards } from './forwards.js';
import { command as reconcile } from './reconcile.js';
import { command as templates } from './templates.js';
import { command as purge } from './purge.js';
import { command as plan } from './plan.js';
import { command as apply } from './apply.js';
import { command as gc } from './gc.js';
import { command as demo } from './demo.js';
import { command as status } from './status.js';
import { command as watch } from './watch.js';

export const COMMANDS: readonly Command[] = [plan, apply, status, watch, gc, forwards, reconcile, templates, purge, demo];
