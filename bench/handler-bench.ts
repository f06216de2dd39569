/**
 * handler: upcall-request-key as the program /sbin/request-key runs, against
 * `/bin/keyctl instantiate` (what a request-key.conf line would run), both as
 * real request-key upcalls: `keyctl request2 user DESC` on the host in a fresh
 * session keyring, each description matched by a line of this run's own rule
 * files (narrow patterns: nothing else on the machine matches them).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BrokerProcess } from '../tests/helpers/broker-process.js';
import { ShellAgent } from './agent.js';
import { brokerTimes, handlerTimes } from './dns-bench.js';
import { compare, fmt, table } from './harness.js';
import { BenchRuleFile, runPrefix } from './rule-file.js';
import type { Figures } from './targets.js';

export const KEYCTL_HANDLER = '/bin/keyctl instantiate %k (request-key.conf line)';

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : NaN;
};

const NEGATE = 'upcall-request-key, broker answers at once (no rule: negate)';

export async function handlerBench(opts: { warmup: number; iterations: number }, figures: Figures = {}): Promise<string> {
  const run = runPrefix('bh');
  const broker = new BrokerProcess();
  const config = join(broker.dir, 'config.json');
  writeFileSync(config, JSON.stringify({
    requestKey: { hostRequests: 'serve', rules: [{ type: 'user', description: `${run}:he*`, program: '/bin/echo', args: ['-n', 'payload'], stdin: 'none' }] },
  }));
  const files: BenchRuleFile[] = [];
  let agent: ShellAgent | null = null;
  try {
    await broker.start(['--config', config, '--log-level', 'info']);
    const logs = { echo: join(broker.dir, 'handler-echo.log'), negate: join(broker.dir, 'handler-negate.log') };
    files.push(await BenchRuleFile.install({ socket: broker.adminSocket, types: ['user'], match: `${run}:he*`, extra: ['--handler-log', logs.echo] }));
    files.push(await BenchRuleFile.install({ socket: broker.adminSocket, types: ['user'], match: `${run}:hn*`, extra: ['--handler-log', logs.negate] }));
    files.push(BenchRuleFile.write([`create\tuser\t${run}:k*\t*\t/bin/keyctl instantiate %k payload %S`]));
    agent = new ShellAgent(null);
    const a = agent;
    let i = 0;
    const request = async (desc: string, mustSucceed: boolean) => {
      const r = await a.run(['keyctl', 'session', '-', 'keyctl', 'request2', 'user', `${desc}${i++}`, '', '@s']);
      if (mustSucceed ? r.code !== 0 : r.code === 0) throw new Error(`handler bench: ${desc}: exit ${r.code}`);
      return r.ms;
    };
    const rows = await compare([
      { name: KEYCTL_HANDLER, run: () => request(`${run}:k`, true) },
      { name: NEGATE, run: () => request(`${run}:hn`, false) },
      { name: 'upcall-request-key, broker runs the rule\'s /bin/echo in the requester\'s context (instantiate)', run: () => request(`${run}:he`, true) },
    ], opts);
    const byName = (n: string) => rows.find((r) => r.name === n)!.median;
    figures.handler = { value: byName(NEGATE) / byName(KEYCTL_HANDLER), detail: `${fmt(byName(NEGATE), 2)} vs ${fmt(byName(KEYCTL_HANDLER), 2)} ms; handler's own time ${fmt(median(handlerTimes(logs.negate)), 2)} ms` };
    return `Each figure is \`keyctl session - keyctl request2 user DESC '' @s\` on the host, timed by bash; the key type's handler is what differs. ` +
      `The broker serves host requesters here (hostRequests: serve), so the rule's program runs in the broker's own context through the zygote (no context cache for the host).\n\n` +
      `${table(rows, KEYCTL_HANDLER)}\n\n` +
      `upcall-request-key's own time, main() to exit (its --log-file elapsed_us, medians): negate ${fmt(median(handlerTimes(logs.negate)))} ms, ` +
      `instantiate from /bin/echo ${fmt(median(handlerTimes(logs.echo)))} ms; ` +
      `of it the broker's request-key op (its audit line's durationMs, medians): negate ${fmt(median(brokerTimes(broker.output, `${run}:hn`)))} ms, ` +
      `instantiate ${fmt(median(brokerTimes(broker.output, `${run}:he`)))} ms.`;
  } finally {
    await agent?.close();
    for (const f of files) f.remove();
    // SIGTERM first: a broker run with --cpu-prof (UB_BROKER_NODE_ARGS) writes its profile as it exits.
    await broker.stop('SIGTERM').catch(() => undefined);
    await broker.dispose();
  }
}
