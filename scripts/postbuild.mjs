// Makes the built command executable (npm link / bin shims need the mode bit), and copies what tsc does not.
import { chmodSync, copyFileSync } from 'node:fs';
chmodSync(new URL('../dist/src/cli/main.js', import.meta.url), 0o755);
// tsc copies no .py: the warm interpreter's fork server and the stateful interpreter are read from next to their modules.
copyFileSync(new URL('../src/sandbox/warm/forkserver.py', import.meta.url), new URL('../dist/src/sandbox/warm/forkserver.py', import.meta.url));
copyFileSync(new URL('../src/sandbox/interpreter/kernel.py', import.meta.url), new URL('../dist/src/sandbox/interpreter/kernel.py', import.meta.url));
// The session locks' helper is run from next to its module too (src/worker/session-locks.ts).
copyFileSync(new URL('../src/worker/lock-helper.py', import.meta.url), new URL('../dist/src/worker/lock-helper.py', import.meta.url));
// The live view's page, script and styles are served from next to its module (src/live/http.ts).
import { cpSync } from 'node:fs';
cpSync(new URL('../src/live/assets/', import.meta.url), new URL('../dist/src/live/assets/', import.meta.url), { recursive: true });
