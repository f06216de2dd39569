/**
 * Registrations a tenant may not make or learn about (issue 16, findings 4, 8
 * and 10), on a real broker and real containers:
 * - a container holds at most limits.containerRegistrations (nested contexts
 *   included), and none beyond it reaches the state journal;
 * - a non-root container user who connects and then execs a setuid-root
 *   program (keeping a copy of the socket to write on) cannot register;
 * - an id that was never issued and another container's id get the same error.
 */
import assert from 'node:assert/strict';
import { chmodSync, chownSync, copyFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { BrokerProcess } from '../helpers/broker-process.js';
import { mountTmpfs } from '../helpers/in-container.js';
import { batchArgv } from '../helpers/reliability.js';
import { Testbed, type TestContainer } from '../testbed/index.js';

const QUOTA = 3;
const broker = new BrokerProcess();
const bed = new Testbed();
let a: TestContainer;
let b: TestContainer;

interface Answer { ok: boolean; code?: string; result?: { id?: string } }

async function batch(c: TestContainer, requests: unknown[], prefix: string[] = []): Promise<Answer[]> {
  const r = await c.exec([...prefix, ...batchArgv(broker.tenantSocket, { mode: 'batch', requests })], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, `batch client in ${c.name}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Answer[];
}

before(async () => {
  const cfg = join(broker.dir, 'limits.json');
  writeFileSync(cfg, JSON.stringify({ limits: { containerRegistrations: QUOTA } }));
  await broker.start(['--config', cfg]);
  [a, b] = await Promise.all([bed.create({ name: 'rgqa' }), bed.create({ name: 'rgqb' })]);
  for (const c of [a, b]) await mountTmpfs(c, '/mnt/q');
});
after(async () => {
  try {
    await bed.dispose();
  } finally {
    await broker.dispose();
  }
});

/** The `source`s of registrations the state files hold (snapshot and journals), each once. */
function sourcesOnDisk(prefix: string): string[] {
  const found = new Set<string>();
  for (const name of readdirSync(broker.stateDir)) {
    for (const m of readFileSync(join(broker.stateDir, name), 'utf8').matchAll(new RegExp(`"${prefix}-\\d+"`, 'g'))) found.add(m[0]);
  }
  return [...found].sort();
}

const register = (source: string) => ({ op: 'register', params: { mountpoint: '/mnt/q', source } });

test(`a container holds at most ${QUOTA} registrations, nested contexts included; none beyond is written`, async () => {
  const first = await batch(a, [0, 1, 2, 3, 4].map((i) => register(`quota-${i}`)));
  assert.deepEqual(first.map((x) => x.code ?? 'ok'), ['ok', 'ok', 'ok', 'E_QUOTA', 'E_QUOTA']);
  // A nested pid namespace and a nested container (own user, pid and mount namespaces) are still A.
  const nestedPid = await batch(a, [register('quota-5')], ['unshare', '--pid', '--fork', '--kill-child']);
  const nestedContainer = await batch(a, [register('quota-6')],
    ['unshare', '--user', '--map-root-user', '--pid', '--mount', '--fork', '--kill-child']);
  assert.equal(nestedPid[0]!.code, 'E_QUOTA');
  assert.equal(nestedContainer[0]!.code, 'E_QUOTA');
  assert.deepEqual(sourcesOnDisk('quota'), ['"quota-0"', '"quota-1"', '"quota-2"']);
  // Another container has a quota of its own; an unregistration frees a place.
  assert.equal((await batch(b, [register('other-0')]))[0]!.ok, true);
  const again = await batch(a, [{ op: 'unregister', params: { id: first[0]!.result!.id } }, register('quota-7')]);
  assert.deepEqual(again.map((x) => x.code ?? 'ok'), ['ok', 'ok']);
});

test('a non-root container user who connects, then execs a setuid-root program, cannot register', async () => {
  // A setuid-root program of the container (owned by its root) that keeps the connecting process alive.
  const suid = join(broker.dir, 'suid-sleep');
  copyFileSync('/usr/bin/sleep', suid);
  chownSync(suid, b.uidBase!, b.uidBase!);
  chmodSync(suid, 0o4755);
  // The connecting process forks a writer that keeps a copy of the socket, then execs the program:
  // the broker's peer (SO_PEERPIDFD) is then a root process; the request comes from the user.
  const script = `use IO::Socket::UNIX; my ($path, $prog) = @ARGV;
    my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $path) or die "connect: $!";
    if (fork() == 0) {
      select(undef, undef, undef, 0.5);
      my $body = '{"v":1,"id":1,"op":"register","params":{"mountpoint":"/mnt/q","source":"suid-0"}}';
      print $s pack('N', length $body) . $body; $s->flush;
      read($s, my $head, 4) == 4 or die "no answer"; read($s, my $answer, unpack('N', $head)); print "$answer\\n"; exit 0;
    }
    exec($prog, '1.5') or die "exec: $!";`;
  const attempt = async (uid: number, prog: string) => {
    const r = await b.exec(['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--inh-caps=-all', 'perl', '-e', script, broker.tenantSocket, prog]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout.trim()) as { ok: boolean; error?: { code: string } };
  };
  const viaSetuid = await attempt(1000, suid);
  assert.equal(viaSetuid.error?.code, 'E_PERMISSION', `registered through a setuid program: ${JSON.stringify(viaSetuid)}`);
  // The same steps as container root register: the refusal is about the credentials, not the steps.
  const asRoot = await attempt(0, '/usr/bin/sleep');
  assert.equal(asRoot.ok, true, JSON.stringify(asRoot));
});

test('an id never issued and another container\'s id get the same error, for every op that takes one', async () => {
  const foreign = (await batch(a, [{ op: 'list' }]))[0]!.result as unknown as Array<{ id: string }>;
  const foreignId = foreign[0]!.id;
  const unknownId = `r-${'0'.repeat(12)}`;
  const ask = async (id: string) => {
    const r = await b.exec([process.execPath, '-e', ASK, broker.tenantSocket, id]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as unknown[];
  };
  const [forForeign, forUnknown] = [await ask(foreignId), await ask(unknownId)];
  assert.ok(forForeign.every((e) => (e as { code: string }).code === 'E_NOT_FOUND'), JSON.stringify(forForeign));
  assert.deepEqual(forForeign, forUnknown);
});

/** show, unregister and resolve of one id, on one connection; prints the three error objects. */
const ASK = `
const net = require('node:net');
const [path, id] = process.argv.slice(1);
const s = net.connect(path);
const reqs = [['show', { id }], ['unregister', { id }], ['resolve', { mount: id, description: 'x.test' }]];
let buf = Buffer.alloc(0); const out = [];
s.on('connect', () => reqs.forEach(([op, params], i) => {
  const body = Buffer.from(JSON.stringify({ v: 1, id: i, op, params })); const h = Buffer.alloc(4); h.writeUInt32BE(body.length);
  s.write(Buffer.concat([h, body]));
}));
s.on('data', (c) => {
  buf = Buffer.concat([buf, c]);
  while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
    const m = JSON.parse(buf.subarray(4, 4 + buf.readUInt32BE(0)).toString()); buf = buf.subarray(4 + buf.readUInt32BE(0));
    out[m.id] = m.error ?? { ok: true };
    if (out.filter(Boolean).length === reqs.length) { console.log(JSON.stringify(out)); s.destroy(); }
  }
});`;
