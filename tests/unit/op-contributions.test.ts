/**
 * Ops are contributions (as Theia's contribution points): each area binds its
 * op classes to OpContribution, and the server's handler table collects them
 * by multi-injection. The real composition gives exactly the ops of
 * docs/protocol.md.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Container, injectable } from 'inversify';
import { defaultConfig } from '../../src/common/defaults.js';
import { createContainer } from '../../src/container.js';
import { NullLoggerFactory } from '../../src/logging/winston-logger-factory.js';
import { OpContribution, RequestHandlers, type Handler } from '../../src/server/request-handlers.js';
import { serverModule } from '../../src/server/server-module.js';

const answer = (value: string): Handler => () => value;

@injectable()
class OneOps implements OpContribution {
  registerOps(handlers: RequestHandlers): void {
    handlers.add('one', answer('1'), { tenant: true });
  }
}

@injectable()
class TwoOps implements OpContribution {
  registerOps(handlers: RequestHandlers): void {
    handlers.add('two', answer('2'));
  }
}

function serverWith(...ops: Array<new () => OpContribution>): Container {
  const c = new Container();
  c.load(serverModule());
  for (const op of ops) {
    c.bind(op).toSelf().inSingletonScope();
    c.bind<OpContribution>(OpContribution).toService(op);
  }
  return c;
}

test('the handler table collects every contribution, and the server\'s own ping', async () => {
  const handlers = serverWith(OneOps, TwoOps).get<RequestHandlers>(RequestHandlers);
  assert.deepEqual(handlers.ops(), ['one', 'ping', 'two']);
  assert.equal(handlers.get('one')!.tenant, true);
  assert.equal(handlers.get('two')!.tenant, false);
  assert.equal(await handlers.get('two')!.handler(undefined, {} as never), '2');
});

test('two contributions of one op name are refused when the table is built', () => {
  @injectable()
  class OneAgain implements OpContribution {
    registerOps(handlers: RequestHandlers): void {
      handlers.add('one', answer('again'));
    }
  }
  assert.throws(() => serverWith(OneOps, OneAgain).get<RequestHandlers>(RequestHandlers), /duplicate handler for op one/);
});

test('the real composition contributes exactly the ops of docs/protocol.md', () => {
  // Nothing is started: building the table only constructs the ops (no socket, no zygote, no state read).
  const dir = mkdtempSync(join(tmpdir(), 'ub-op-contributions-'));
  try {
    const config = { ...defaultConfig(), stateDir: dir, adminSocket: join(dir, 'admin.sock'), tenantSocket: null, metricsListen: null };
    const handlers = createContainer(config, new NullLoggerFactory()).get<RequestHandlers>(RequestHandlers);
    assert.deepEqual(handlers.ops(), ['exec', 'list', 'mount-for', 'ping', 'register', 'register-for', 'request-key', 'resolve', 'show', 'status', 'unregister']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
