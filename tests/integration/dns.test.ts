import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { BrokerClient } from '../../src/client/broker-client.js';
import type { RegistrationInfo } from '../../src/common/types.js';
import { decodeServerListV1 } from '../../src/upcall/dns/server-list-v1.js';
import { BrokerProcess } from '../helpers/broker-process.js';
import { HostCanaryDns } from '../helpers/host-canary-dns.js';
import { cliIn, mountTmpfs } from '../helpers/in-container.js';
import { Testbed, type TestContainer } from '../testbed/index.js';

interface ResolveJson {
  payloadBase64: string;
  text: string | null;
  expirySeconds: number;
  dnserror: number | null;
  sources: Array<{ address: string; from: string; ttl: number | null }>;
}

const broker = new BrokerProcess();
const canary = new HostCanaryDns();
const bed = new Testbed();
let a: TestContainer;
let b: TestContainer;
const reg = new Map<TestContainer, string>();

async function registered(c: TestContainer): Promise<string> {
  await mountTmpfs(c, '/mnt/dns');
  const r = await cliIn<RegistrationInfo>(c, ['register', '--socket', broker.tenantSocket, '--mount', '/mnt/dns']);
  assert.equal(r.code, 0, JSON.stringify(r.json));
  reg.set(c, r.json.id);
  return r.json.id;
}

async function resolve(c: TestContainer, description: string, callout = ''): Promise<ResolveJson> {
  const client = await BrokerClient.connect(broker.adminSocket);
  try {
    return await client.request<ResolveJson>('resolve', { mount: reg.get(c)!, description, callout });
  } finally {
    client.close();
  }
}

const payload = (r: ResolveJson) => Buffer.from(r.payloadBase64, 'base64');

before(async () => {
  await canary.start();
  await broker.start();
  [a, b] = await Promise.all([
    bed.create({
      name: 'dnsa', hosts: '192.0.2.20 files.test', searchDomains: ['corp.test'],
      records: [
        { name: 'svc.test', type: 'A', address: '192.0.2.10', ttl: 42 },
        { name: 'svc.test', type: 'A', address: '192.0.2.11', ttl: 40 },
        { name: 'svc.test', type: 'AAAA', address: '2001:db8::10', ttl: 30 },
        { name: 'fs.corp.test', type: 'A', address: '192.0.2.12', ttl: 300 },
        { name: 'big.test', type: 'A', address: '192.0.2.13', ttl: 77 },
        { name: 'broken.test', type: 'A', address: '192.0.2.14' },
        { name: 'liar.test', type: 'A', address: '192.0.2.15' },
        { name: 'slow.test', type: 'A', address: '192.0.2.16', ttl: 16 },
        { name: '_afs3-vlserver._udp.cell.test', type: 'SRV', priority: 10, weight: 5, port: 7003, target: 'vl1.cell.test', ttl: 600 },
        { name: 'vl1.cell.test', type: 'A', address: '192.0.2.31', ttl: 100 },
        { name: 'old.test', type: 'AFSDB', subtype: 1, hostname: 'vl2.old.test', ttl: 500 },
        { name: 'vl2.old.test', type: 'A', address: '192.0.2.32', ttl: 200 },
      ] as never,
      dnsBehaviours: [{ name: 'big.test', kind: 'truncate' }, { name: 'broken.test', kind: 'servfail' },
        { name: 'garbage.test', kind: 'garbage' }, { name: 'liar.test', kind: 'wrongid' }],
    }),
    bed.create({ name: 'dnsb', hosts: '192.0.2.120 files.test', records: [{ name: 'svc.test', type: 'A', address: '192.0.2.110', ttl: 99 }] }),
  ]);
  await registered(a);
  await registered(b);
});
after(async () => {
  await bed.dispose();
  await broker.dispose();
  await canary.stop();
});

describe('DNS upcalls resolve inside the container', () => {
  test('the same description gives each container its own answer; nothing reaches the host\'s network', async () => {
    const ra = await resolve(a, 'svc.test');
    const rb = await resolve(b, 'svc.test');
    assert.equal(ra.text, '192.0.2.10');
    assert.equal(rb.text, '192.0.2.110');
    assert.equal(payload(ra).toString('latin1'), '192.0.2.10\0', 'trailing NUL included');
    assert.equal(ra.expirySeconds, 40, 'minimum TTL over the A answer set');
    assert.equal(rb.expirySeconds, 99);
    assert.ok((await a.dnsQueries()).some((q) => q.name === 'svc.test'), 'container A\'s own server was asked');
    assert.ok((await b.dnsQueries()).some((q) => q.name === 'svc.test'));
    assert.equal((await resolve(a, 'files.test')).text, '192.0.2.20', 'hosts file first');
    assert.equal((await resolve(b, 'files.test')).text, '192.0.2.120');
    assert.deepEqual(canary.queries(), [], 'no DNS query left from the host\'s network namespace');
  });

  test('the host cannot resolve the containers\' names (host lookup against a loopback canary)', () => {
    const r = spawnSync('script', ['-qec', canary.hostArgv(['/sbin/key.dns_resolver', '-D', 'svc.test', '']).map((s) => `'${s.replace(/'/g, "'\\''")}'`).join(' '), '/dev/null'], { encoding: 'utf8' });
    assert.match(r.stdout, /NS:svc\.test: No address associated with name|Host name lookup failure|Unknown host/i, r.stdout);
    assert.ok(canary.queries().length > 0, 'the host lookup went to the loopback canary, not off the machine');
  });

  test('search list with ndots, TCP after a truncated UDP answer, SERVFAIL and NXDOMAIN', async () => {
    const fs = await resolve(a, 'fs');
    assert.equal(fs.text, '192.0.2.12', 'fs -> fs.corp.test through the search list');
    const big = await resolve(a, 'big.test');
    assert.equal(big.text, '192.0.2.13');
    assert.deepEqual((await a.dnsQueries()).filter((q) => q.name === 'big.test').map((q) => q.proto), ['udp', 'tcp']);
    const broken = await resolve(a, 'broken.test');
    assert.equal(broken.dnserror, 11, 'SERVFAIL is try-again: EAGAIN');
    assert.equal(broken.expirySeconds, 1);
    assert.equal(payload(broken).toString('latin1'), '#dnserror=11\0');
    const missing = await resolve(a, 'missing.test');
    assert.equal(missing.dnserror, 61, 'NXDOMAIN: ENODATA');
    assert.equal(missing.expirySeconds, 60);
  });

  test('AFS: SRV cell and AFSDB-only cell as the binary v1 server list', async () => {
    const srv = decodeServerListV1(payload(await resolve(a, 'afsdb:cell.test', 'srv=1')));
    assert.equal(srv.source, 4);
    assert.deepEqual(srv.servers.map((s) => [s.name, s.priority, s.weight, s.port, s.addresses]), [['vl1.cell.test', 10, 5, 7003, ['192.0.2.31']]]);
    const afsdb = decodeServerListV1(payload(await resolve(a, 'afsdb:old.test', 'srv=1')));
    assert.equal(afsdb.source, 3);
    assert.deepEqual(afsdb.servers.map((s) => [s.name, s.addresses]), [['vl2.old.test', ['192.0.2.32']]]);
  });
});

describe('hostile and absent nameservers', () => {
  test('a server answering garbage or under a wrong id: no answer accepted, try-again, bounded time', async () => {
    for (const name of ['garbage.test', 'liar.test']) {
      const started = Date.now();
      const r = await resolve(a, name);
      assert.equal(r.dnserror, 11, `${name}: EAGAIN (no valid reply)`);
      assert.equal(r.expirySeconds, 1);
      assert.ok(Date.now() - started < 5000, `${name}: bounded by resolv.conf's timeout x attempts`);
    }
    const outcomes = (await a.dnsQueries()).filter((q) => q.name === 'liar.test').map((q) => q.outcome);
    assert.ok(outcomes.includes('wrongid'), 'the server did lie');
  });

  test('a nameserver that never answers: timeout, then the next nameserver answers', async () => {
    const { containerFiles } = await import('../testbed/init-protocol.js');
    const path = containerFiles(a.dir).resolvConf;
    const original = readFileSync(path, 'utf8');
    // 192.0.2.99 is on the container's eth0 subnet but nobody has it: queries vanish (no ARP reply).
    writeFileSync(path, 'nameserver 192.0.2.99\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n'); // in place: it is bind-mounted
    try {
      const started = Date.now();
      const r = await resolve(a, 'slow.test');
      const took = Date.now() - started;
      assert.equal(r.text, '192.0.2.16');
      assert.equal(r.sources[0]!.from, '127.0.0.1', 'answered by the second nameserver');
      assert.ok(took >= 900 && took < 4000, `waited one timeout (1 s) for the first: ${took} ms`);
    } finally {
      writeFileSync(path, original);
    }
  });
});

describe('reference: keyutils\' key.dns_resolver -D run inside the same container', () => {
  // key.dns_resolver prints its result only when stdout is a terminal: run it under script(1).
  async function keyutils(c: TestContainer, description: string, callout: string): Promise<string | null> {
    const cmd = `/sbin/key.dns_resolver -D '${description}' '${callout}'`;
    const r = await c.exec(['script', '-qec', cmd, '/dev/null']);
    const m = /The key instantiation data is '([^']*)'/.exec(r.stdout);
    return m ? m[1]! : null;
  }

  for (const callout of ['', 'ipv4', 'list', 'ipv4 list']) {
    for (const name of ['svc.test', 'files.test']) {
      test(`${name} with callout "${callout}"`, async () => {
        const ours = await resolve(a, name, callout);
        assert.equal(ours.text, await keyutils(a, name, callout));
        // On purpose we differ in expiry: keyutils always uses its 5 s default; we use the DNS TTL.
      });
    }
  }

  for (const callout of ['ipv6', 'ipv6 list']) {
    test(`svc.test (A and AAAA in DNS) with callout "${callout}"`, async () => {
      const ours = await resolve(a, 'svc.test', callout);
      assert.equal(ours.text, '2001:db8::10');
      assert.equal(ours.text, await keyutils(a, 'svc.test', callout));
    });
  }

  test('a name that does not exist: keyutils fails, we give #dnserror=61 (its ENODATA)', async () => {
    assert.equal(await keyutils(a, 'missing.test', 'list'), null);
    assert.equal((await resolve(a, 'missing.test', 'list')).dnserror, 61);
  });
});

describe('hostile container files', () => {
  // Each case covers the container's /etc/resolv.conf with a bind mount (inside its own mount
  // namespace only) and removes it again; the broker must refuse clearly, in bounded time.
  const secret = `/tmp/ub-host-secret-${process.pid}`;
  before(() => {
    writeFileSync(secret, 'nameserver 192.0.2.77\n');
    chmodSync(secret, 0o600); // host root only
  });
  after(() => rmSync(secret, { force: true }));

  const cases: Array<[string, string, RegExp]> = [
    ['a symlink to a host-only file (read with the container\'s credentials)', `ln -sf ${secret} /mnt/dns/rc && mount --bind /mnt/dns/rc /etc/resolv.conf`, /EACCES/],
    ['a FIFO', 'mkfifo /mnt/dns/fifo && mount --bind /mnt/dns/fifo /etc/resolv.conf', /EINVAL/],
    ['a 100 MB file', 'truncate -s 100M /mnt/dns/huge && mount --bind /mnt/dns/huge /etc/resolv.conf', /EFBIG/],
    ['a device node', 'mount --bind /dev/zero /etc/resolv.conf', /EINVAL/],
  ];
  for (const [what, setup, errno] of cases) {
    test(`resolv.conf as ${what}: E_BAD_REQUEST naming the file, nothing sent`, async () => {
      await a.check(['sh', '-c', setup]);
      const before = (await a.dnsQueries()).length;
      try {
        const c = await BrokerClient.connect(broker.adminSocket);
        const started = Date.now();
        await assert.rejects(c.request('resolve', { mount: reg.get(a)!, description: 'svc.test' }), (e: { code?: string; message?: string }) =>
          e.code === 'E_BAD_REQUEST' && /resolv\.conf/.test(e.message ?? '') && errno.test(e.message ?? ''));
        assert.ok(Date.now() - started < 5000, 'bounded time');
        c.close();
        assert.equal((await a.dnsQueries()).length, before, 'no query was sent');
      } finally {
        await a.exec(['sh', '-c', 'umount /etc/resolv.conf; rm -f /mnt/dns/rc /mnt/dns/fifo /mnt/dns/huge']);
      }
    });
  }

  test('afterwards the container resolves normally again (the broker was unaffected)', async () => {
    assert.equal((await resolve(a, 'svc.test')).text, '192.0.2.10');
    assert.deepEqual(canary.queries().filter((q) => q.includes('192.0.2.77')), []);
  });
});
