// Makes the built command executable (npm link / bin shims need the mode bit).
import { chmodSync } from 'node:fs';
chmodSync(new URL('../dist/src/cli/main.js', import.meta.url), 0o755);
