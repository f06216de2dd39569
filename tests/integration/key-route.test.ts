/**
 * Which context answers a kernel key request (docs/walk-rule.md, cases 6–8),
 * on this host's kernel: it runs request-key upcalls for callers in the
 * initial user namespace, so the kernel path is tested with such callers (an
 * agent entered into a container's namespaces, a mount-namespace-only process
 * with its own /etc/hosts); user-namespaced and kernel-thread requesters are
 * sent to the broker's `request-key` op directly, as the handler would send them.
 *
 * The rule file matches only this run's names and has no fallback, so nothing
 * here ever sends a DNS query from the host's network namespace; it is removed
 * in after(), on exit and on SIGINT/SIGTERM.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BrokerClient } from '../../src/client/broker-client.js';
import type { KeyDecision } from '../../src/broker/request-key-ops.js';
import type { RegistrationInfo } from '../../src/common/types.js';
import { BrokerProcess, runCli } from '../helpers/broker-process.js';
import { cliIn, mountTmpfs } from '../helpers/in-container.js';
import { removeOnExit } from '../helpers/remove-on-exit.js';
import { Testbed, type TestContainer } from '../testbed/index.js';

const RUN = `ubr${process.pid}${randomBytes(3).toString('hex')}`;
const RULE_FILE = `/etc/request-key.d/ub-test-${process.pid}-${randomBytes(4).toString('hex')}.conf`;
const name = (label: string) => `${label}.${RUN}.test`;
const MATCH = `*.${RUN}.test`;
const POISON = '10.66.6.6';

const removeRuleFile = removeOnExit(RULE_FILE);
const broker = new BrokerProcess();
const bed = new Testbed();
let c: TestContainer;
let d: TestContainer;
let reg: RegistrationInfo;
const children: ChildProcess[] = [];
const poisonHosts = join(broker.dir, 'poison-hosts');
const METRICS = join(broker.dir, 'metrics.sock');

/** `keyctl request2 dns_resolver NAME` in a fresh session keyring, run as `argv` prefix says; payload or error. */
function request(prefix: string[], description: string): { ok: boolean; out: string } {
  const script = 'k=$(keyctl request2 dns_resolver "$1" @s) || exit 1; keyctl pipe "$k"';
  const r = spawnSync(prefix[0]!, [...prefix.slice(1), 'keyctl', 'session', '-', 'sh', '-c', script, 'sh', description], { encoding: 'utf8', timeout: 15_000 });
  return { ok: r.status === 0, out: r.status === 0 ? r.stdout.replace(/\0$/, '') : r.stderr };
}

/** The broker's audit line for a description (its log reaches us a little after the key). */
async function auditFor(description: string): Promise<Record<string, unknown>> {
  for (let i = 0; i < 40; i++) {
    const found = broker.output.split('\n').filter((l) => l.includes('"message":"request-key"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>).reverse().find((l) => l['description'] === description);
    if (found) return found;
    await sleep(50);
  }
  throw new Error(`no audit line for ${description}`);
}

/** The op as the handler sends it, for a requester the kernel on this host would not run an upcall for. */
async function askBroker(requesterPid: number, description: string): Promise<KeyDecision> {
  const client = await BrokerClient.connect(broker.adminSocket);
  try {
    return await client.request<KeyDecision>('request-key', {
      keyId: 1, op: 'create', type: 'dns_resolver', description, requesterPid, uid: 0, gid: 0, timeoutMs: 5000,
    });
  } finally {
    client.close();
  }
}

/** Start `argv` (an unshare with --kill-child) and return the pid of its forked child once that runs `sleep`. */
async function startInNamespaces(argv: string[]): Promise<number> {
  const p = spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' });
  children.push(p);
  for (let i = 0; i < 100; i++) {
    const kids = (() => {
      try {
        return readFileSync(`/proc/${p.pid}/task/${p.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
      } catch {
        return [];
      }
    })();
    const ready = kids.find((k) => {
      try {
        return readFileSync(`/proc/${k}/comm`, 'utf8').trim() === 'sleep';
      } catch {
        return false;
      }
    });
    if (ready !== undefined) return ready;
    await sleep(20);
  }
  throw new Error(`${argv.join(' ')} did not start`);
}

before(async () => {
  writeFileSync(poisonHosts, `127.0.0.1 localhost\n${POISON} ${name('poison')}\n`);
  await broker.start(['--metrics', METRICS]);
  const install = await runCli(['request-key', 'install', '--socket', broker.adminSocket, '--types', 'dns_resolver',
    '--match', MATCH, '--file', RULE_FILE, '--fallback', 'none', '--json']);
  assert.equal(install.code, 0, install.stdout + install.stderr);
  [c, d] = await Promise.all([
    bed.create({
      name: 'krc',
      records: [
        { name: name('files'), type: 'A', address: '192.0.2.77', ttl: 300 },
        { name: name('shared'), type: 'A', address: '192.0.2.90', ttl: 300 },
        { name: name('split'), type: 'A', address: '192.0.2.91', ttl: 300 },
      ],
    }),
    bed.create({
      name: 'krd',
      records: [
        { name: name('shared'), type: 'A', address: '192.0.2.90', ttl: 200 },
        { name: name('split'), type: 'A', address: '192.0.2.92', ttl: 300 },
      ],
    }),
  ]);
  /** As an agent does for a mount it made (host root: its source routes kernel threads). */
  const registerAs = async (x: TestContainer, path: string, source: string) => {
    await mountTmpfs(x, path);
    const r = await runCli(['register', '--socket', broker.adminSocket, '--for-pid', String(x.initPid), '--mount', path, '--fstype', 'cifs', '--source', source, '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    return JSON.parse(r.stdout) as RegistrationInfo;
  };
  reg = await registerAs(c, '/mnt/files', `//${name('files')}/share`);
  await registerAs(c, '/mnt/shared', `//${name('shared')}/share`);
  await registerAs(d, '/mnt/shared', `//${name('shared')}/share`);
  await registerAs(c, '/mnt/split', `//${name('split')}/share`);
  await registerAs(d, '/mnt/split', `//${name('split')}/share`);
  // A tenant typing in a source that names another container's server: it must route nothing.
  await mountTmpfs(d, '/mnt/claim');
  const claim = await cliIn<RegistrationInfo>(d, ['register', '--socket', broker.tenantSocket, '--mount', '/mnt/claim', '--fstype', 'cifs', '--source', `//${name('files')}/share`]);
  assert.equal(claim.code, 0, JSON.stringify(claim.json));
});

after(async () => {
  for (const p of children) if (p.exitCode === null && p.pid !== undefined) p.kill('SIGKILL');
  await runCli(['request-key', 'uninstall', '--file', RULE_FILE, '--json']).catch(() => null);
  removeRuleFile();
  try {
    await bed.dispose();
  } finally {
    await broker.dispose();
  }
  assert.equal(existsSync(RULE_FILE), false, 'rule file left behind');
});

describe('dns_resolver keys are answered by the context that owns the network namespace', () => {
  test('an agent (initial user namespace) entered into a container\'s net and mount namespaces is answered in that container', async () => {
    const ns = (t: string) => `--${t}=/proc/${c.initPid}/ns/${t === 'mount' ? 'mnt' : t}`;
    const r = request(['nsenter', ns('net'), ns('mount'), '--'], name('files'));
    const audit = await auditFor(name('files'));
    assert.ok(r.ok, `${r.out} ${JSON.stringify(audit)}`);
    assert.equal(r.out, '192.0.2.77', 'the container\'s own DNS server answered');
    assert.equal(audit['route'], 'netns-context');
    assert.equal(audit['context'], reg.context.id);
  });

  test('cache poisoning: a mount-namespace-only process in the host\'s netns with its own /etc/hosts is answered as the host', async () => {
    const script = `mount --bind ${poisonHosts} /etc/hosts && exec "$@"`;
    const r = request(['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, 'sh'], name('poison'));
    const audit = await auditFor(name('poison'));
    assert.equal(r.ok, false, `the process's own file must not answer: ${r.out}`);
    assert.match(r.out, /Required key not available/, 'declined to the host, which here has no fallback: a negative key');
    assert.equal(audit['route'], 'netns-host');
    assert.equal(audit['action'], 'decline');
    const host = request(['env'], name('poison'));
    assert.equal(host.ok, false, `the host's lookup does not see ${POISON}: ${host.out}`);
  });

  test('cache poisoning, user-namespaced (the op as the handler sends it): a process with its own user, pid and mount namespaces in the host\'s netns', async () => {
    const pid = await startInNamespaces(['unshare', '-Urpm', '--fork', '--kill-child', 'sh', '-c', `mount --bind ${poisonHosts} /etc/hosts && exec sleep 60`]);
    assert.match(readFileSync(`/proc/${pid}/root/etc/hosts`, 'utf8'), new RegExp(POISON.replace(/\./g, '\\.')), 'its own hosts file is in place');
    const decision = await askBroker(pid, name('poison'));
    assert.equal(decision.action, 'decline', JSON.stringify(decision));
    assert.equal(decision.route, 'netns-host');
    assert.equal(decision.host, true);
  });

  test('a requester in a network namespace no known context owns is refused, never answered from its walk', async () => {
    const pid = await startInNamespaces(['unshare', '-n', '--fork', '--kill-child', 'sleep', '60']);
    const decision = await askBroker(pid, name('files'));
    assert.equal(decision.action, 'negate', JSON.stringify(decision));
    assert.equal(decision.route, 'netns-decline');
  });
});

describe('kernel-thread requesters are routed by the registrations whose source names the host', () => {
  const KTHREADD = 2;

  test('one context\'s registration: its answer, with the expiry capped at 10 s (a tenant\'s typed-in source naming that host counts for nothing)', async () => {
    const decision = await askBroker(KTHREADD, name('files'));
    assert.equal(decision.action, 'instantiate', JSON.stringify(decision));
    assert.equal(decision.route, 'kthread-registration');
    assert.equal(decision.context, reg.context.id);
    if (decision.action !== 'instantiate') return;
    assert.equal(Buffer.from(decision.payloadBase64, 'base64').toString().replace(/\0$/, ''), '192.0.2.77');
    assert.equal(decision.expirySeconds, 10, 'TTL 300 capped by kernelThreadMaxExpirySeconds');
  });

  test('two contexts that agree: the answer; two that disagree: a short negative key', async () => {
    const same = await askBroker(KTHREADD, name('shared'));
    assert.equal(same.action, 'instantiate', JSON.stringify(same));
    assert.equal(same.route, 'kthread-agreed');
    const split = await askBroker(KTHREADD, name('split'));
    assert.equal(split.action, 'reject', JSON.stringify(split));
    assert.equal(split.route, 'kthread-ambiguous');
    if (split.action === 'reject') assert.equal(split.timeoutSeconds, 1);
    const metrics = await scrape();
    assert.match(metrics, /upcall_broker_key_routes_total\{route="kthread-ambiguous"\} [1-9]/);
  });

  test('no registration names the host: answered as on the host', async () => {
    const decision = await askBroker(KTHREADD, name('nowhere'));
    assert.equal(decision.action, 'decline', JSON.stringify(decision));
    assert.equal(decision.route, 'kthread-host');
  });
});

/** The broker's Prometheus text from its metrics socket. */
function scrape(): Promise<string> {
  return new Promise((resolve, reject) => {
    httpGet({ socketPath: METRICS, path: '/metrics' }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => { body += c; }).on('end', () => resolve(body));
    }).on('error', reject);
  });
}
