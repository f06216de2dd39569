import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decodeServerListV1, encodeServerListV1 } from '../../src/upcall/dns/server-list-v1.js';
import { resolveDnsKey, parseCallout, parseDescription } from '../../src/upcall/dns/dns-key.js';
import { lookupHosts } from '../../src/upcall/dns/hosts-file.js';
import { candidateNames, parseResolvConf } from '../../src/upcall/dns/resolv-conf.js';
import { StubResolver } from '../../src/upcall/dns/stub-resolver.js';
import { A, AAAA, CNAME, FakeDnsTransport, type FakeBehaviour } from '../helpers/fake-dns-transport.js';

const conf = (text: string) => parseResolvConf(text);
const resolver = (text: string, script: Record<string, FakeBehaviour>) => {
  const t = new FakeDnsTransport(script);
  return { t, r: new StubResolver(conf(text), t) };
};

describe('resolv.conf and hosts', () => {
  test('glibc limits and defaults', () => {
    const c = conf('nameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 10.0.0.4\nsearch a.test b.test\noptions ndots:20 timeout:99 attempts:9 rotate\n');
    assert.deepEqual(c.nameservers, ['10.0.0.1', '10.0.0.2', '10.0.0.3'], 'MAXNS is 3');
    assert.deepEqual(c.search, ['a.test', 'b.test']);
    assert.equal(c.ndots, 15);
    assert.equal(c.timeoutSeconds, 30);
    assert.equal(c.attempts, 5);
    assert.equal(c.rotate, true);
    assert.deepEqual(conf('# empty\n').nameservers, ['127.0.0.1'], 'no nameserver: the local one');
    assert.deepEqual(conf('search x.test\ndomain y.test\n').search, ['y.test'], 'the last search/domain line wins');
  });

  test('search list and ndots in glibc order', () => {
    const c = conf('search corp.test lab.test\noptions ndots:2\n');
    assert.deepEqual(candidateNames('fs', c), ['fs.corp.test', 'fs.lab.test', 'fs']);
    assert.deepEqual(candidateNames('fs.eu.example', c), ['fs.eu.example', 'fs.eu.example.corp.test', 'fs.eu.example.lab.test']);
    assert.deepEqual(candidateNames('fs.', c), ['fs']);
  });

  test('hosts file: aliases, case, comments, families, file order', () => {
    const hosts = '# c\n192.0.2.10 files.test Files\n2001:db8::0:1 files.test\n192.0.2.11 other files.test # x\nbad line\n';
    assert.deepEqual(lookupHosts(hosts, 'FILES.test.').map((e) => e.address), ['192.0.2.10', '2001:db8::1', '192.0.2.11']);
    assert.deepEqual(lookupHosts(hosts, 'files').map((e) => e.family), [4]);
  });
});

describe('kernel dns_resolver formats', () => {
  test('callout options as keyutils 1.6.3 reads them', () => {
    assert.deepEqual(parseCallout(''), { families: [4], one: true, srv: null });
    assert.deepEqual(parseCallout('list'), { families: [4, 6], one: false, srv: null });
    assert.deepEqual(parseCallout('ipv6'), { families: [6], one: true, srv: null });
    assert.deepEqual(parseCallout('ipv4 list'), { families: [4], one: false, srv: null });
    assert.deepEqual(parseCallout('srv=1'), { families: [4, 6], one: true, srv: 1 });
    assert.throws(() => parseCallout('a,b'), (e: { code?: string }) => e.code === 'E_BAD_REQUEST');
  });

  test('descriptions', () => {
    assert.deepEqual(parseDescription('fs.test'), { kind: 'address', name: 'fs.test' });
    assert.deepEqual(parseDescription('aaaa:fs.test'), { kind: 'address', name: 'fs.test' });
    assert.deepEqual(parseDescription('afsdb:cell.test'), { kind: 'afsdb', name: 'cell.test' });
    assert.throws(() => parseDescription('mx:x'), (e: { code?: string }) => e.code === 'E_BAD_REQUEST');
    assert.throws(() => parseDescription('a:'), (e: { code?: string }) => e.code === 'E_BAD_REQUEST');
  });

  test('hosts file first: text payload with trailing NUL, keyutils\' default expiry', async () => {
    const { t, r } = resolver('nameserver 10.0.0.53\n', {});
    const res = await resolveDnsKey('files.test', 'list', '192.0.2.7 files.test\n192.0.2.8 files.test\n', r);
    assert.equal(res.payload.toString('latin1'), '192.0.2.7,192.0.2.8\0');
    assert.equal(res.expirySeconds, 5);
    assert.deepEqual(res.sources.map((s) => s.from), ['hosts', 'hosts']);
    assert.deepEqual(t.log, [], 'no DNS traffic for a hosts-file name');
  });

  test('DNS: legacy mode gives one IPv4 address; list gives A then AAAA; expiry is the minimum TTL', async () => {
    const script = { '* svc.test A': { answers: [A('svc.test', '192.0.2.1', 120), A('svc.test', '192.0.2.2', 60)] }, '* svc.test AAAA': { answers: [AAAA('svc.test', '2001:db8::5', 30)] } };
    const legacy = await resolveDnsKey('svc.test', '', '', resolver('nameserver 10.0.0.53\n', script).r);
    assert.equal(legacy.text, '192.0.2.1');
    assert.equal(legacy.expirySeconds, 60, 'the minimum over the A answer set');
    const list = await resolveDnsKey('svc.test', 'list', '', resolver('nameserver 10.0.0.53\n', script).r);
    assert.equal(list.text, '192.0.2.1,192.0.2.2,2001:db8::5');
    assert.equal(list.expirySeconds, 30);
    const v6 = await resolveDnsKey('aaaa:svc.test', 'ipv6 list', '', resolver('nameserver 10.0.0.53\n', script).r);
    assert.equal(v6.text, '2001:db8::5');
  });

  test('search list, CNAME chains, truncation to TCP, dead nameserver then the next', async () => {
    const { t, r } = resolver('nameserver 10.0.0.1\nnameserver 10.0.0.2\nsearch corp.test\noptions timeout:1 attempts:1\n', {
      '10.0.0.1 fs.corp.test A': { timeout: true },
      '10.0.0.2 fs.corp.test A': { truncateUdp: [CNAME('fs.corp.test', 'real.corp.test', 50), A('real.corp.test', '192.0.2.9', 80)] },
    });
    const res = await resolveDnsKey('fs', 'ipv4', '', r);
    assert.equal(res.text, '192.0.2.9');
    assert.equal(res.expirySeconds, 50, 'CNAME TTLs count');
    assert.equal(res.sources[0]!.from, '10.0.0.2');
    assert.deepEqual(t.log, ['udp 10.0.0.1 fs.corp.test A', 'udp 10.0.0.2 fs.corp.test A', 'tcp 10.0.0.2 fs.corp.test A']);
  });

  test('failures: #dnserror with keyutils\' errno and timeouts', async () => {
    const cases: Array<[FakeBehaviour, number, number]> = [
      [{ rcode: 'NXDOMAIN' }, 61, 60],
      [{ answers: [] }, 61, 60],
      [{ rcode: 'SERVFAIL' }, 11, 1],
      [{ timeout: true }, 11, 1],
      [{ rcode: 'REFUSED' }, 111, 10],
      [{ garbage: true }, 11, 1],
      [{ wrongId: [A('x.test', '192.0.2.1')] }, 11, 1],
    ];
    for (const [b, errno, expiry] of cases) {
      const res = await resolveDnsKey('x.test', 'ipv4', '', resolver('nameserver 10.0.0.1\noptions attempts:1\n', { '* x.test A': b }).r);
      assert.equal(res.dnserror, errno, JSON.stringify(b));
      assert.equal(res.payload.toString('latin1'), `#dnserror=${errno}\0`);
      assert.equal(res.expirySeconds, expiry, JSON.stringify(b));
    }
  });

  test('AFS: SRV then addresses, as the binary v1 server list (srv=1) and as keyutils text', async () => {
    const script: Record<string, FakeBehaviour> = {
      '* _afs3-vlserver._udp.cell.test SRV': { answers: [
        { type: 'SRV', name: '_afs3-vlserver._udp.cell.test', ttl: 600, data: { priority: 10, weight: 5, port: 7003, target: 'vl1.cell.test' } },
        { type: 'SRV', name: '_afs3-vlserver._udp.cell.test', ttl: 600, data: { priority: 20, weight: 0, port: 7003, target: 'vl2.cell.test' } },
      ] },
      '* vl1.cell.test A': { answers: [A('vl1.cell.test', '192.0.2.31', 100)] },
      '* vl2.cell.test AAAA': { answers: [AAAA('vl2.cell.test', '2001:db8::32', 200)] },
    };
    const bin = await resolveDnsKey('afsdb:cell.test', 'srv=1', '', resolver('nameserver 10.0.0.1\n', script).r);
    assert.equal(bin.payload[0], 0, 'binary payloads start with a zero byte');
    const list = decodeServerListV1(bin.payload);
    assert.equal(list.source, 4);
    assert.deepEqual(list.servers.map((s) => [s.name, s.priority, s.weight, s.port, s.addresses]), [
      ['vl1.cell.test', 10, 5, 7003, ['192.0.2.31']], ['vl2.cell.test', 20, 0, 7003, ['2001:db8::32']]]);
    assert.equal(bin.expirySeconds, 100);
    const text = await resolveDnsKey('afsdb:cell.test', 'ipv4', '', resolver('nameserver 10.0.0.1\n', script).r);
    assert.equal(text.text, '192.0.2.31+7003');
  });

  test('server list v1 round-trips and rejects malformed input', () => {
    const list = { source: 3, status: 1, servers: [{ name: 'a', priority: 1, weight: 2, port: 0, source: 3, status: 1, protocol: 1, addresses: ['192.0.2.1', '::1', 'fe80::1:2'] }] };
    assert.deepEqual(decodeServerListV1(encodeServerListV1(list)), list);
    assert.throws(() => decodeServerListV1(Buffer.from([0, 0, 1, 3, 1, 1, 9])));
  });
});
