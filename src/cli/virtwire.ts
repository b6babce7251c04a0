// Entry point of the `virtwire` command.
import { run } from './main.js';

await run();
