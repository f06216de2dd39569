import { rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { inject, injectable } from 'inversify';
import { BrokerError } from '../common/errors.js';
import { BrokerConfig, LoggerFactory, type Logger } from '../common/tokens.js';
import { Metrics } from './metrics.js';

/**
 * Serves GET /metrics on a loopback port ("127.0.0.1:9464") or a UNIX socket
 * (an absolute path), as configured; never on a routable address.
 */
@injectable()
export class MetricsServer {
  private server: Server | null = null;
  private readonly log: Logger;

  constructor(
    @inject(BrokerConfig) private readonly config: BrokerConfig,
    @inject(Metrics) private readonly metrics: Metrics,
    @inject(LoggerFactory) loggers: LoggerFactory,
  ) {
    this.log = loggers.get('service:MetricsServer');
  }

  async start(): Promise<void> {
    const where = this.config.metricsListen;
    if (!where) return;
    const server = createServer((req, res) => {
      if (req.method !== 'GET' || req.url !== '/metrics') {
        res.writeHead(404).end();
        return;
      }
      this.metrics.registry.metrics().then((body) => {
        res.writeHead(200, { 'Content-Type': this.metrics.registry.contentType }).end(body);
      }, () => res.writeHead(500).end());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if (where.startsWith('/')) {
        rmSync(where, { force: true });
        server.listen(where, resolve);
      } else {
        const m = /^(127\.\d+\.\d+\.\d+|\[::1\]|localhost):(\d+)$/.exec(where);
        if (!m) throw new BrokerError('E_CONFIG', `metricsListen must be a loopback host:port or an absolute path, not "${where}"`);
        server.listen(Number(m[2]), m[1]!.replace(/[[\]]/g, ''), resolve);
      }
    });
    this.server = server;
    this.metrics.watchEventLoop();
    this.log.info('metrics listening', { where });
  }

  async stop(): Promise<void> {
    const s = this.server;
    if (!s) return;
    this.metrics.unwatchEventLoop();
    await new Promise<void>((r) => s.close(() => r()));
    if (this.config.metricsListen?.startsWith('/')) rmSync(this.config.metricsListen, { force: true });
    this.server = null;
  }
}
