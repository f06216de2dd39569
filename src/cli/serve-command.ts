import type { Command } from 'commander';
import { BrokerService } from '../broker/broker-service.js';
import { Signals } from '../common/tokens.js';
import { createContainer } from '../container.js';
import { WinstonLoggerFactory } from '../logging/winston-logger-factory.js';
import { untilStopSignal } from '../service/stop-signals.js';
import { loadConfig } from './config-loader.js';
import { reportError } from './output.js';

interface ServeOptions {
  socket?: string;
  tenantSocket?: string;
  stateDir?: string;
  config?: string;
  logLevel?: string;
  logFormat?: 'json' | 'console';
  metrics?: string;
}

export function addServeCommand(program: Command): void {
  program.command('serve')
    .description('run the broker in the foreground until SIGTERM/SIGINT')
    .option('-s, --socket <path>', 'admin socket (default /run/upcall-broker/broker.sock)')
    .option('-t, --tenant-socket <path>', 'tenant socket, bind-mounted into containers (default: none)')
    .option('-d, --state-dir <dir>', 'registration state directory (default /var/lib/upcall-broker)')
    .option('-c, --config <file>', 'JSON configuration file (default: the embedded defaults)')
    .option('-l, --log-level <level>', 'error, warn, info or debug')
    .option('-f, --log-format <format>', 'json (default) or console')
    .option('-M, --metrics <where>', 'serve Prometheus metrics on 127.0.0.1:PORT or a UNIX socket path')
    .action(async (opts: ServeOptions) => {
      process.exitCode = await serve(opts);
    });
}

async function serve(opts: ServeOptions): Promise<number> {
  let loggers: WinstonLoggerFactory;
  let service: BrokerService;
  let signals: Signals;
  try {
    const config = loadConfig(opts.config);
    if (opts.socket !== undefined) config.adminSocket = opts.socket;
    if (opts.tenantSocket !== undefined) config.tenantSocket = opts.tenantSocket;
    if (opts.stateDir !== undefined) config.stateDir = opts.stateDir;
    if (opts.logLevel !== undefined) config.logLevel = opts.logLevel;
    if (opts.logFormat !== undefined) config.logFormat = opts.logFormat;
    if (opts.metrics !== undefined) config.metricsListen = opts.metrics;
    loggers = new WinstonLoggerFactory({ level: config.logLevel, format: config.logFormat });
    const ioc = createContainer(config, loggers);
    service = ioc.get(BrokerService);
    signals = ioc.get<Signals>(Signals);
    await service.start();
  } catch (err) {
    return reportError(false, err);
  }
  const log = loggers.get('cli:serve');
  // SIGHUP: re-read the config file; what can change live (the log level) changes, the rest is
  // reported as needing a restart. Registrations and in-flight upcalls are untouched.
  const signal = await untilStopSignal(signals, () => {
    try {
      const next = loadConfig(opts.config);
      loggers.setLevel(opts.logLevel ?? next.logLevel);
      log.info('configuration reloaded', { config: opts.config ?? '(embedded default)', logLevel: opts.logLevel ?? next.logLevel });
    } catch (err) {
      log.error('configuration reload refused; keeping the running configuration', { error: String((err as Error).message) });
    }
  });
  log.info('stopping', { signal });
  await service.stop();
  await loggers.flush();
  return 0;
}
