import winston from 'winston';
import type { Logger, LoggerFactory } from '../common/tokens.js';

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LoggingOptions {
  level: string;
  format: 'json' | 'console';
  /** Where lines go; stdout by default (the systemd unit hands it to the journal). */
  stream?: NodeJS.WritableStream;
}

/**
 * Winston behind our Logger interface: one root logger, a child per class with
 * `logger: 'area:Class'` in every line. JSON lines for the journal, or a compact
 * human console format for an operator in a terminal.
 */
export class WinstonLoggerFactory implements LoggerFactory {
  private readonly root: winston.Logger;

  constructor(options: LoggingOptions) {
    if (!(LOG_LEVELS as readonly string[]).includes(options.level)) {
      throw new Error(`unknown log level "${options.level}" (one of ${LOG_LEVELS.join(', ')})`);
    }
    const format = options.format === 'json'
      ? winston.format.combine(winston.format.timestamp(), winston.format.json())
      : winston.format.combine(winston.format.timestamp({ format: 'HH:mm:ss.SSS' }), consoleLine);
    this.root = winston.createLogger({
      level: options.level,
      format,
      transports: [new winston.transports.Stream({ stream: options.stream ?? process.stdout })],
    });
  }

  get(name: string): Logger {
    const child = this.root.child({ logger: name });
    return {
      error: (m, meta) => child.error(m, meta),
      warn: (m, meta) => child.warn(m, meta),
      info: (m, meta) => child.info(m, meta),
      debug: (m, meta) => child.debug(m, meta),
      audit: (event, meta) => child.info(event, { ...meta, audit: true }),
    };
  }

  /** Change the level of every child logger at once (SIGHUP reload). */
  setLevel(level: string): void {
    if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new Error(`unknown log level "${level}"`);
    this.root.level = level;
  }

  /** Resolves once buffered lines are written (call before exit). */
  async flush(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.root.on('finish', () => resolve());
      this.root.end();
    });
  }
}

const consoleLine = winston.format.printf((info) => {
  const { timestamp, level, message, logger, ...rest } = info as Record<string, unknown>;
  const meta = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : '';
  return `${String(timestamp)} ${String(level).padEnd(5)} ${String(logger ?? '')}: ${String(message)}${meta}`;
});

/** For unit tests and for commands that must print nothing but their result. */
export class NullLoggerFactory implements LoggerFactory {
  readonly lines: Array<{ name: string; level: string; message: string; meta?: Record<string, unknown> }> = [];
  get(name: string): Logger {
    const push = (level: string) => (message: string, meta?: Record<string, unknown>) => {
      this.lines.push(meta === undefined ? { name, level, message } : { name, level, message, meta });
    };
    return { error: push('error'), warn: push('warn'), info: push('info'), debug: push('debug'), audit: push('audit') };
  }
}
