import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { linkSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BrokerClient } from '../../src/client/broker-client.js';
import type { RegistrationInfo } from '../../src/common/types.js';
import { BrokerProcess, CLI, runCli } from '../helpers/broker-process.js';
import { cliIn, mountTmpfs } from '../helpers/in-container.js';
import { Testbed } from '../testbed/index.js';
import { until } from '../helpers/until.js';

const dir = mkdtempSync(join(tmpdir(), 'ub-service-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('configuration', () => {
  test('a bad config file is refused at start with the path and the field named', async () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ logLevel: 'chatty' }));
    const r = await runCli(['serve', '--config', bad, '--socket', join(dir, 'never.sock')]);
    assert.equal(r.code, 12);
    assert.match(r.stderr, /E_CONFIG/);
    assert.match(r.stderr, new RegExp(`${bad}: logLevel`));
    writeFileSync(bad, '{ "adminSocket": ');
    const r2 = await runCli(['serve', '--config', bad]);
    assert.equal(r2.code, 12);
    assert.match(r2.stderr, /JSON/);
  });

  test('SIGHUP reloads the configuration and keeps registrations', async (t) => {
    const bed = new Testbed();
    const broker = new BrokerProcess();
    t.after(async () => {
      await bed.dispose();
      await broker.dispose();
    });
    const cfg = join(dir, 'hup.json');
    writeFileSync(cfg, JSON.stringify({ logLevel: 'info' }));
    await broker.start(['--config', cfg]);
    const c = await bed.create({ name: 'hup' });
    await mountTmpfs(c, '/mnt/h');
    const reg = await cliIn<RegistrationInfo>(c, ['register', '--socket', broker.tenantSocket, '--mount', '/mnt/h']);
    writeFileSync(cfg, JSON.stringify({ logLevel: 'warn' }));
    process.kill(broker.pid!, 'SIGHUP');
    await until('the reload to be logged', () => /configuration reloaded/.test(broker.output));
    const client = await BrokerClient.connect(broker.adminSocket);
    try {
      assert.equal((await client.show({ id: reg.json.id })).state, 'live', 'registration survived the reload');
    } finally {
      client.close();
    }
  });
});

describe('systemd integration', () => {
  test('socket activation: the broker serves on a listening socket passed as fd 3 (LISTEN_FDS/LISTEN_PID)', async () => {
    const path = join(dir, 'activated.sock');
    const server = createServer();
    await new Promise<void>((r) => server.listen(path, r));
    const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
    const child = spawn('sh', ['-c', `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=admin exec "${process.execPath}" "${CLI}" serve --socket ${join(dir, 'unused.sock')} --state-dir ${join(dir, 'state-a')}`],
      { stdio: ['ignore', 'pipe', 'pipe', fd] });
    try {
      let out = '';
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on('data', (b: Buffer) => { out += b.toString(); if (out.includes('"message":"ready"')) resolve(); });
        child.once('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
      });
      // The broker owns its copy of the listening socket now. Closing ours makes libuv unlink
      // the path it bound, so keep a hard link to the socket inode to connect through.
      const link = join(dir, 'activated-link.sock');
      linkSync(path, link);
      server.close();
      assert.match(out, /socket activation/);
      const client = await BrokerClient.connect(link);
      assert.equal((await client.ping()).peer.listener, 'admin');
      client.close();
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });

  test('Type=notify: READY=1 and STOPPING=1 reach the notify socket', async () => {
    const notify = join(dir, 'notify.sock');
    // Node has no UNIX datagram sockets: a python3 listener stands in for systemd.
    const listener = spawn('python3', ['-c', `import socket,sys
s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM); s.bind(sys.argv[1]); print("up",flush=True)
while True:
    print(s.recv(4096).decode().replace("\\n"," | "),flush=True)`, notify], { stdio: ['ignore', 'pipe', 'inherit'] });
    let got = '';
    listener.stdout.on('data', (b: Buffer) => (got += b.toString()));
    const broker = new BrokerProcess();
    try {
      while (!got.includes('up')) await sleep(20);
      process.env['NOTIFY_SOCKET'] = notify;
      await broker.start();
      delete process.env['NOTIFY_SOCKET'];
      await sleep(200);
      assert.match(got, /READY=1/);
      assert.match(got, new RegExp(`MAINPID=${broker.pid}`));
      assert.equal(await broker.stop('SIGTERM'), 0);
      await sleep(200);
      assert.match(got, /STOPPING=1/);
    } finally {
      delete process.env['NOTIFY_SOCKET'];
      listener.kill('SIGKILL');
      await broker.dispose();
    }
  });
});

describe('observability', () => {
  test('status --json and the metrics endpoint report what happened', async (t) => {
    const broker = new BrokerProcess();
    const bed = new Testbed();
    t.after(async () => {
      await bed.dispose();
      await broker.dispose();
    });
    const metricsSock = join(broker.dir, 'metrics.sock');
    // The longest a relay may be kept: each lookup below is a CLI process (~0.3 s, over 1 s on a loaded
    // machine, longer than the default relayIdleMs), and what is checked is that the reuse is counted.
    const config = join(broker.dir, 'config.json');
    writeFileSync(config, JSON.stringify({ dns: { relayReuseMs: 5000, relayIdleMs: 5000 } }));
    await broker.start(['--metrics', metricsSock, '--config', config]);
    const c = await bed.create({ name: 'obs' });
    await mountTmpfs(c, '/mnt/o');
    const reg = await cliIn<RegistrationInfo>(c, ['register', '--socket', broker.tenantSocket, '--mount', '/mnt/o']);
    assert.equal(reg.code, 0);
    const refused = await cliIn(c, ['register', '--socket', broker.tenantSocket, '--mount', '/mnt/nonexistent']);
    assert.equal(refused.code, 4);
    // Two DNS upcalls in a row: the second is served by the relay the first one started.
    for (let i = 0; i < 2; i++) {
      const r = await runCli(['resolve', '--socket', broker.adminSocket, '--mount', reg.json.id, '--json', 'localhost']);
      assert.equal(r.code, 0, r.stdout + r.stderr);
    }
    const st = await runCli(['status', '--socket', broker.adminSocket, '--json']);
    const s = JSON.parse(st.stdout) as { registrations: { total: number }; contexts: { live: number }; recentFailures: Array<{ type: string; code: string }> };
    assert.equal(s.registrations.total, 1);
    assert.equal(s.contexts.live, 1);
    assert.deepEqual(s.recentFailures.map((f) => [f.type, f.code]), [['register', 'E_NOT_FOUND']]);
    const human = await runCli(['status', '--socket', broker.adminSocket]);
    assert.match(human.stdout, /REGISTRATIONS/);
    const body = await new Promise<string>((resolve, reject) => {
      request({ socketPath: metricsSock, path: '/metrics' }, (res) => {
        let text = '';
        res.on('data', (b: Buffer) => (text += b.toString()));
        res.on('end', () => resolve(text));
      }).on('error', reject).end();
    });
    assert.match(body, /upcall_broker_registrations 1/);
    assert.match(body, /upcall_broker_live_contexts 1/);
    assert.match(body, /upcall_broker_registration_decisions_total\{outcome="ok"\} 1/);
    assert.match(body, /upcall_broker_registration_decisions_total\{outcome="E_NOT_FOUND"\} 1/);
    assert.match(body, /upcall_broker_dns_relays_total\{how="started"\} 1\n/);
    assert.match(body, /upcall_broker_dns_relays_total\{how="reused"\} 1\n/);
    assert.match(body, /upcall_broker_event_loop_delay_seconds\{stat="max"\} [0-9.e-]+\n/);
    assert.match(body, /upcall_broker_gc_pause_seconds\{stat="max"\} [0-9.e-]+\n/);
    const denied = await cliIn(c, ['status', '--socket', broker.tenantSocket]);
    assert.equal(denied.code, 3, 'status is not for tenants');
  });
});

