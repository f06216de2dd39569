import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { PACKAGE_ROOT } from '../../src/common/paths.js';
import { scaled } from '../testbed/time-scale.js';

const rules = `/etc/request-key.d/ub-walkthrough-test-${process.pid}.conf`;
after(() => rmSync(rules, { force: true })); // even if the script died before its own cleanup

test('the README walkthrough runs as written and shows two containers\' different answers through the kernel', async () => {
  const script = join(PACKAGE_ROOT, 'examples/walkthrough/two-containers.sh');
  const readme = readFileSync(join(PACKAGE_ROOT, 'README.md'), 'utf8');
  assert.ok(readme.includes('bash examples/walkthrough/two-containers.sh'), 'the README tells users to run this script');
  const out = await new Promise<{ code: number | null; text: string }>((resolve) => {
    const child = spawn('bash', [script], { env: { ...process.env, UB_WALKTHROUGH_RULES: rules }, stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (b: Buffer) => (text += b.toString()));
    child.stderr.on('data', (b: Buffer) => (text += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), scaled(60_000));
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, text });
    });
  });
  assert.equal(out.code, 0, out.text);
  assert.match(out.text, /container a: keyctl request2 dns_resolver fileserver-\d+\.walkthrough -> 192\.0\.2\.10$/m);
  assert.match(out.text, /container b: keyctl request2 dns_resolver fileserver-\d+\.walkthrough -> 192\.0\.2\.20$/m);
  assert.match(out.text, /"action":"instantiate"/, 'the broker built the keys');
  assert.equal(existsSync(rules), false, 'the script removed its request-key rule');
  const inits = [...out.text.matchAll(/init is host pid (\d+)/g)].map((m) => Number(m[1]));
  assert.equal(inits.length, 2);
  for (const pid of inits) assert.equal(existsSync(`/proc/${pid}`), false, `container init ${pid} is gone`);
});
