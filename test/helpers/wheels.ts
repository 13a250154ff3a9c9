import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

/**
 * Build a valid pure-Python wheel (`<name>-<version>-py3-none-any.whl`) in `dir`
 * with Python's zipfile: `<name>/__init__.py` (defining VERSION and `value`), and
 * `<name>-<version>.dist-info/{METADATA,WHEEL,RECORD}` with real sha256 hashes.
 * Returns the wheel's path.
 */
export function buildWheel(dir: string, name: string, version: string, value = `${name}-${version}`): string {
  mkdirSync(dir, { recursive: true });
  const script = String.raw`
import base64, hashlib, sys, zipfile, os
out_dir, name, version, value = sys.argv[1:5]
dist = name.replace('-', '_')
info = f"{dist}-{version}.dist-info"
files = {
    f"{dist}/__init__.py": f"VERSION = {version!r}\nvalue = {value!r}\n",
    f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: test wheel {name}\n",
    f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: codegen-mcp-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
def digest(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
record = "".join(f"{p},{digest(c.encode())},{len(c.encode())}\n" for p, c in files.items()) + f"{info}/RECORD,,\n"
files[f"{info}/RECORD"] = record
path = os.path.join(out_dir, f"{dist}-{version}-py3-none-any.whl")
with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
    for p, c in files.items():
        z.writestr(p, c)
print(path)
`;
  const out = execFileSync('python3', ['-c', script, dir, name, version, value], { encoding: 'utf8' });
  return path.resolve(out.trim());
}
