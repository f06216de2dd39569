/**
 * kernel DNS upcall: `keyctl request2 dns_resolver NAME` from inside a
 * container, through the kernel, /sbin/request-key, our rule file,
 * upcall-request-key and a real broker (`upcall-broker serve`), against the
 * same request on the host served by keyutils' key.dns_resolver (the stock
 * rule). And, in the broker's own process, the DNS upcall before and after
 * the fast path (one-shot spawner relay, zygote relay capturing per upcall,
 * zygote relay with the context cache, relays kept between upcalls by
 * RelayPool). The kernel path runs through two brokers side by side: the
 * default one (relays kept) and one with `dns.relayReuseMs: 0` (a relay per
 * upcall, as before RelayPool).
 *
 * The kernel runs /sbin/request-key in the host's mount namespace, so the
 * host side uses names of the real /etc/hosts; each is first checked against
 * a loopback canary DNS server (private mount namespace) to resolve from the
 * file alone: no query ever leaves this machine. Key caching is defeated with
 * a fresh anonymous session keyring per request (`keyctl session -`). The
 * container side cycles through HOSTS_NAMES names of its /etc/hosts per row, as
 * the host side cycles through the few of the host's: both files stay a few
 * lines long. (A fresh name per request, as before, grew the container's file
 * to three lines per iteration, 6,300 in a full run, which every upcall reads
 * and parses, against the host's three.) Names from its DNS server stay fresh.
 *
 * The agent rows: a process in the initial user namespace entered into the
 * container's network and mount namespaces (nsenter --net --mount), as a CSI
 * plugin mounting for it is. Its dns_resolver requests go through the kernel
 * (which runs upcalls for such a requester on every kernel) to the broker,
 * which answers them in the container's context (route netns-context,
 * checked from the audit lines), from the container's /etc/hosts or from its
 * DNS server, which runs inside the container's network namespace: no query
 * leaves it.
 */
import { spawnSync } from 'node:child_process';
import 'reflect-metadata';
import { Context } from '../src/broker/context-table.js';
import { NamespaceWalker } from '../src/broker/namespace-walker.js';
import { defaultConfig } from '../src/common/defaults.js';
import { Clock, LoggerFactory, ProcessSpawner, Random, Timers } from '../src/common/tokens.js';
import { createContainer } from '../src/container.js';
import { NullLoggerFactory } from '../src/logging/winston-logger-factory.js';
import { Libc } from '../src/ns/libc.js';
import { Pidfd } from '../src/ns/pidfd.js';
import { Spawner } from '../src/upcall/native-spawner.js';
import { DnsServiceImpl } from '../src/upcall/dns/dns-service-impl.js';
import { SpawnerRelayLauncher, ZygoteRelayLauncher } from '../src/upcall/dns/relay-launcher.js';
import { ZygoteRunner } from '../src/upcall/zygote-runner.js';
import { BrokerProcess } from '../tests/helpers/broker-process.js';
import { HostCanaryDns } from '../tests/helpers/host-canary-dns.js';
import { ShellAgent } from './agent.js';
import { readFileSync, writeFileSync } from 'node:fs';
import { ContextTable } from '../src/broker/context-table.js';
import { Metrics } from '../src/service/metrics.js';
import { RelayPool } from '../src/upcall/dns/relay-pool.js';
import type { RelayLauncher } from '../src/upcall/dns/relay-launcher.js';
import { compare, fmt, table } from './harness.js';
import { LightContainer } from './light-container.js';
import { DEFAULT_NATIVE_DIR } from '../src/common/paths.js';
import { join } from 'node:path';
import { BenchRuleFile, runPrefix } from './rule-file.js';
import type { Figures } from './targets.js';

/** Names per row in the container's /etc/hosts (the host's has three lines here). */
const HOSTS_NAMES = 4;

export const HOST_DNS = 'host: keyctl request2 dns_resolver <name in /etc/hosts>, key.dns_resolver';

/** Names of the host's /etc/hosts that key.dns_resolver resolves without sending a single DNS query. */
export async function safeHostNames(): Promise<string[]> {
  const candidates = ['localhost', 'vm', 'runsc'];
  const canary = new HostCanaryDns();
  await canary.start();
  try {
    const safe: string[] = [];
    for (const name of candidates) {
      const before = canary.queries().length;
      const argv = canary.hostArgv(['/sbin/key.dns_resolver', '-D', name, '']);
      const r = spawnSync('script', ['-qec', argv.map((s) => `'${s.replace(/'/g, "'\\''")}'`).join(' '), '/dev/null'], { encoding: 'utf8', timeout: 10_000 });
      if (/instantiation data is '\d/.test(r.stdout) && canary.queries().length === before) safe.push(name);
    }
    return safe;
  } finally {
    await canary.stop();
  }
}

/** The namespaces a mounting agent (CSI node plugin, runtime hook) enters: the container's network and mount. */
const AGENT_NS = ['net', 'mount'] as const;
const CONTAINER_HOSTS = 'container: a name from its /etc/hosts, through the broker';
const AGENT_HOSTS = 'agent (initial user namespace; nsenter --net --mount into the container): a name from the container\'s /etc/hosts, through the broker';

/** How many of the broker's request-key audit lines for descriptions starting with `prefix` took each route. */
export function agentRoutes(output: string, prefix: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const l of output.split('\n')) {
    if (!l.includes('"message":"request-key"') || !l.includes(prefix)) continue;
    try {
      const j = JSON.parse(l) as { description?: string; route?: string };
      if (j.description?.startsWith(prefix)) out[j.route ?? 'none'] = (out[j.route ?? 'none'] ?? 0) + 1;
    } catch {
      // not a log line of ours
    }
  }
  return out;
}

const request = (name: string) => ['keyctl', 'session', '-', 'keyctl', 'request2', 'dns_resolver', name, '', '@s'];

/** Register the container's "/" (a mount point) with the C client, from inside; the registration id. */
export async function registerRoot(c: LightContainer, tenantSocket: string): Promise<string> {
  const r = await c.exec([join(DEFAULT_NATIVE_DIR, 'ub-mount-helper'), '--socket', tenantSocket, '--no-mount', '/']);
  if (r.code !== 0) throw new Error(`register in ${c.name} failed (${r.code}): ${r.stdout}${r.stderr}`);
  return r.stdout.trim();
}

export async function dnsBench(opts: { warmup: number; iterations: number }, figures: Figures = {}): Promise<string> {
  const hostNames = await safeHostNames();
  if (hostNames.length === 0) throw new Error('dns bench: no name of /etc/hosts resolves without a DNS query; refusing to run the host side');
  const run = runPrefix('bd');
  const total = opts.warmup + opts.iterations + 4;
  const hostsName = (i: number) => `${run}-h${i % HOSTS_NAMES}.test`;
  const unpooledName = (i: number) => `${run}x-h${i % HOSTS_NAMES}.test`;
  const dnsName = (i: number) => `${run}-d${i}.test`;
  const agentHostsName = (i: number) => `${run}-ah${i % HOSTS_NAMES}.test`;
  const agentDnsName = (i: number) => `${run}-ad${i}.test`;
  const addr = (i: number) => `198.51.100.${(i % HOSTS_NAMES) + 1}`; // a name's address, whichever list it is in
  const broker = new BrokerProcess();
  const unpooled = new BrokerProcess();
  let rules: BenchRuleFile | null = null;
  let unpooledRules: BenchRuleFile | null = null;
  const agents: ShellAgent[] = [];
  const sections: string[] = [];
  let c: LightContainer | null = null;
  try {
    await broker.start(['--log-level', 'info']);
    const unpooledConfig = join(unpooled.dir, 'config.json');
    writeFileSync(unpooledConfig, JSON.stringify({ dns: { relayReuseMs: 0 } }));
    await unpooled.start(['--log-level', 'info', '--config', unpooledConfig]);
    c = await LightContainer.start({
      name: 'bench-dns',
      hosts: Array.from({ length: HOSTS_NAMES }, (_, i) => `${addr(i)} ${hostsName(i)}\n${addr(i)} ${unpooledName(i)}\n${addr(i)} ${agentHostsName(i)}`).join('\n'),
      records: Array.from({ length: total }, (_, i) => [dnsName(i), agentDnsName(i)].map((name) => ({ name, type: 'A' as const, address: addr(i), ttl: 60 }))).flat(),
    });
    await registerRoot(c, broker.tenantSocket);
    await registerRoot(c, unpooled.tenantSocket);
    const handlerLog = join(broker.dir, 'handler.log');
    rules = await BenchRuleFile.install({ socket: broker.adminSocket, types: ['dns_resolver'], match: `${run}-*`, extra: ['--handler-log', handlerLog] });
    unpooledRules = await BenchRuleFile.install({ socket: unpooled.adminSocket, types: ['dns_resolver'], match: `${run}x-*` });

    // Correctness first: the payload each side gets.
    const pipe = (name: string) => ['keyctl', 'session', '-', 'sh', '-c', `keyctl pipe "$(keyctl request2 dns_resolver ${name} '' @s)"`];
    const inC = await c.exec(pipe(hostsName(total - 1)));
    const inD = await c.exec(pipe(dnsName(total - 1)));
    const ctr = c;
    const onHost = spawnSync(pipe(hostNames[0]!)[0]!, pipe(hostNames[0]!).slice(1), { encoding: 'utf8' });
    const asAgent = (argv: string[]) => spawnSync('nsenter', ['--target', String(ctr.initPid), ...AGENT_NS.map((n) => `--${n}`), '--', ...argv], { encoding: 'utf8' });
    const byAgent = asAgent(pipe(agentDnsName(total - 1)));
    const clean = (t: string) => t.replace(/\0/g, '').trim();
    // Some kernels refuse key construction for a caller in a user namespace (request_key fails ENOENT and no
    // upcall runs: docs/security.md, doctor's "request-key upcalls from user namespaces"); the agent's still runs.
    const refused = (r: { stderr: string }) => /request_key: No such file or directory/.test(r.stderr);
    const userns = !(refused(inC) && refused(inD));
    if ((userns && (clean(inC.stdout) !== addr(total - 1) || clean(inD.stdout) !== addr(total - 1))) || !/^127\./.test(clean(onHost.stdout)) || clean(byAgent.stdout) !== addr(total - 1)) {
      throw new Error(`dns bench: wrong answers: container hosts "${inC.stdout}" ${inC.stderr}, container DNS "${inD.stdout}" ${inD.stderr}, host "${onHost.stdout}", agent "${byAgent.stdout}" ${byAgent.stderr}`);
    }

    const host = new ShellAgent(null);
    const inside = new ShellAgent(ctr.initPid);
    // A mounting agent: the host's user namespace and credentials, in the container's network and mount namespaces.
    const agentNs = new ShellAgent(ctr.initPid, AGENT_NS);
    agents.push(host, inside, agentNs);
    let ah = 0;
    let ad = 0;
    let h = 0;
    let u = 0;
    let d = 0;
    let n = 0;
    const timed = async (agent: ShellAgent, name: string) => {
      const r = await agent.run(request(name));
      if (r.code !== 0) {
        const again = agent === host ? spawnSync(request(name)[0]!, request(name).slice(1), { encoding: 'utf8' }) : agent === agentNs ? asAgent(request(name)) : await ctr.exec(request(name));
        throw new Error(`dns bench: keyctl request2 dns_resolver ${name} failed (${r.code}); again: ${again.stdout}${again.stderr}`);
      }
      return r.ms;
    };
    const rows = await compare([
      { name: HOST_DNS, run: () => timed(host, hostNames[n++ % hostNames.length]!) },
      ...(userns ? [
        { name: CONTAINER_HOSTS, run: () => timed(inside, hostsName(h++)) },
        { name: 'container: the same, broker with dns.relayReuseMs 0 (a relay per upcall: before RelayPool)', run: () => timed(inside, unpooledName(u++)) },
        { name: 'container: fresh name from its DNS server, through the broker', run: () => timed(inside, dnsName(d++)) },
      ] : []),
      { name: AGENT_HOSTS, run: () => timed(agentNs, agentHostsName(ah++)) },
      { name: 'agent: the same, a fresh name from the container\'s DNS server (in its netns), through the broker', run: () => timed(agentNs, agentDnsName(ad++)) },
    ], opts);
    const med = (n: string) => rows.find((r) => r.name === n)?.median ?? NaN;
    // The target's figure: a requester inside the container where this kernel runs its upcall, else the agent
    // (initial user namespace, in the container's net and mount namespaces): the kernel path a container's mount takes.
    figures.dns = userns
      ? { value: med(CONTAINER_HOSTS) / med(HOST_DNS), detail: `requester inside the container; agent ${(med(AGENT_HOSTS) / med(HOST_DNS)).toFixed(2)}x` }
      : { value: med(AGENT_HOSTS) / med(HOST_DNS), detail: 'requester: an agent in the container\'s net+mount namespaces, since this kernel refuses request-key from a user namespace' };
    const routes = agentRoutes(broker.output, `${run}-a`);
    const wrong = Object.entries(routes).filter(([route]) => route !== 'netns-context');
    if (routes['netns-context'] === undefined || wrong.length > 0) throw new Error(`dns bench: the agent's requests took routes ${JSON.stringify(routes)}, not only netns-context`);
    sections.push(`Where the container's time goes (medians over the run): the handler, upcall-request-key, from main() to exit: ${fmt(median(handlerTimes(handlerLog)))} ms; ` +
      `inside it, the broker's request-key op (its audit line's durationMs): ${fmt(median(brokerTimes(broker.output, run)))} ms; ` +
      `the rest (keyctl, the kernel, /sbin/request-key reading its configuration, exec of the handler) is shared with the host side, ` +
      `where key.dns_resolver takes the handler's place.`);
    if (!userns) {
      sections.push('This kernel refuses request-key upcalls for callers in a user namespace (`request_key` fails with ENOENT inside the ' +
        'container, no upcall runs; docs/security.md): the rows of a requester inside the container are left out, the agent\'s rows measure the kernel path.');
    }
    sections.push(`The agent's requests (the requester is in the initial user namespace, so every kernel runs their upcall): ` +
      `${routes['netns-context']} answered by route netns-context, in the container's context (docs/walk-rule.md, case 8); ` +
      `agent from the container's /etc/hosts / host key.dns_resolver from the host's /etc/hosts, medians: ` +
      `${(rows.find((r) => r.name === AGENT_HOSTS)!.median / rows.find((r) => r.name === HOST_DNS)!.median).toFixed(2)}.`);
    sections.push(`Through the kernel (each figure is \`keyctl session - keyctl request2 ...\` timed by bash inside the container, as the agent, or on the host; host names: ${hostNames.join(', ')}, checked to resolve from /etc/hosts alone):\n\n${table(rows, HOST_DNS)}`);
    await Promise.all(agents.map((a) => a.close()));
    agents.length = 0;

    sections.push(`In the broker's process (DnsService.resolve of a name from the same container's /etc/hosts; no kernel, no socket):\n\n${table(await brokerSide(ctr, hostsName, total, opts), 'one-shot spawner relay (before: exec per upcall)')}`);
    return sections.join('\n\n');
  } finally {
    await Promise.all(agents.map((a) => a.close()));
    rules?.remove();
    unpooledRules?.remove();
    await c?.stop();
    // SIGTERM first: a broker run with --cpu-prof (UB_BROKER_NODE_ARGS) writes its profile as it exits.
    await Promise.all([broker, unpooled].map((b) => b.stop('SIGTERM').catch(() => undefined)));
    await broker.dispose();
    await unpooled.dispose();
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : NaN;
};

/** elapsed_us of the handler's --log-file lines, in ms. */
export function handlerTimes(path: string): number[] {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  return [...text.matchAll(/ elapsed_us=(\d+) /g)].map((m) => Number(m[1]) / 1000);
}

/** durationMs of the broker's request-key audit lines for this run's names. */
export function brokerTimes(output: string, prefix: string): number[] {
  return output.split('\n').filter((l) => l.includes('"message":"request-key"') && l.includes(prefix)).flatMap((l) => {
    try {
      const d = (JSON.parse(l) as { durationMs?: number }).durationMs;
      return typeof d === 'number' ? [d] : [];
    } catch {
      return [];
    }
  });
}

/** The DnsService inside this process, with each relay launcher. */
async function brokerSide(c: LightContainer, name: (i: number) => string, total: number, opts: { warmup: number; iterations: number }) {
  const di = createContainer(defaultConfig(), new NullLoggerFactory());
  const libc = di.get<Libc>(Libc);
  const walker = di.get(NamespaceWalker);
  const make = () => new ZygoteRunner(di.get(ProcessSpawner), defaultConfig(), di.get(LoggerFactory), di.get(Clock));
  const cold = make();
  cold.configure({ contextCache: false });
  const warm = make();
  const clock = di.get<Clock>(Clock);
  const timers = di.get<Timers>(Timers);
  const loggers = di.get<LoggerFactory>(LoggerFactory);
  const pool = (launcher: RelayLauncher, relayReuseMs: number) =>
    new RelayPool(launcher, { ...defaultConfig(), dns: { relayReuseMs } }, clock, di.get(ContextTable), new Metrics(), timers, di.get<Random>(Random));
  const kept = pool(new ZygoteRelayLauncher(warm), 2000);
  const services = {
    spawner: new DnsServiceImpl(pool(new SpawnerRelayLauncher(di.get(Spawner), libc), 0), clock, loggers, timers),
    cold: new DnsServiceImpl(pool(new ZygoteRelayLauncher(cold), 0), clock, loggers, timers),
    warm: new DnsServiceImpl(pool(new ZygoteRelayLauncher(warm), 0), clock, loggers, timers),
    kept: new DnsServiceImpl(kept, clock, loggers, timers),
  };
  using init = Pidfd.open(libc, c.initPid);
  const ctx = new Context('bench', walker.hold(init));
  let i = 0;
  const resolve = async (s: DnsServiceImpl) => {
    const n = name(i++ % total);
    const r = await s.resolve(ctx, n, '');
    if (r.text === null || r.dnserror !== null) throw new Error(`dns bench: ${n}: ${r.status}`);
  };
  try {
    return await compare([
      { name: 'one-shot spawner relay (before: exec per upcall)', run: () => resolve(services.spawner) },
      { name: 'zygote relay, capture per upcall', run: () => resolve(services.cold) },
      { name: 'zygote relay, context cache', run: () => resolve(services.warm) },
      { name: 'zygote relay kept between upcalls (RelayPool, the default)', run: () => resolve(services.kept) },
    ], opts);
  } finally {
    kept.close();
    ctx.release();
    await Promise.all([cold.stop(), warm.stop()]);
  }
}
