import { writeSync } from 'node:fs';
import { Writable } from 'node:stream';
import winston from 'winston';
import type { Logger, LoggerFactory } from '../common/tokens.js';

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
const AUDIT = { audit: true } as const;
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
      ? winston.format.combine(winston.format.timestamp(), jsonLine())
      : winston.format.combine(winston.format.timestamp({ format: 'HH:mm:ss.SSS' }), consoleLine);
    this.root = winston.createLogger({
      level: options.level,
      format,
      transports: [new winston.transports.Stream({ stream: new TurnBatchedStream(options.stream ?? process.stdout) })],
    });
  }

  get(name: string): Logger {
    const child = this.root.child({ logger: name });
    return {
      error: (m, meta) => child.error(m, meta),
      warn: (m, meta) => child.warn(m, meta),
      info: (m, meta) => child.info(m, meta),
      debug: (m, meta) => child.debug(m, meta),
      // Object.assign, not `{ ...meta, audit: true }`: a spread followed by a key makes V8 build a hidden
      // class per line, in old space (one audit line per upcall: 7x the time, and full GCs for it).
      audit: (event, meta) => child.info(event, Object.assign({}, meta, AUDIT)),
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

/**
 * Lines are written once per turn of the event loop, joined, instead of with one write(2) each as they are
 * made: the reply to a request goes out before its audit line is written, and a busy broker makes one system
 * call per turn rather than one per line. Measured (issue 17, bench/profiles/handler-broker.txt): the audit
 * line's synchronous write to stdout was 40 % of the request-key op's own time. Lines still pending when the
 * process exits (an uncaught error, process.exit) are written synchronously on 'exit' when the target is
 * stdout or stderr.
 */
export class TurnBatchedStream extends Writable {
  private pending: string[] = [];
  private scheduled = false;
  private readonly fd: number | null;

  constructor(private readonly target: NodeJS.WritableStream) {
    super({ decodeStrings: false });
    this.fd = target === process.stdout ? 1 : target === process.stderr ? 2 : null;
    if (this.fd !== null) process.once('exit', () => this.flushSync());
  }

  override _write(chunk: string | Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.pending.push(typeof chunk === 'string' ? chunk : chunk.toString());
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flushTurn());
    }
    done();
  }

  override _final(done: (error?: Error | null) => void): void {
    this.flushTurn();
    done();
  }

  private flushTurn(): void {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const text = this.pending.join('');
    this.pending = [];
    this.target.write(text);
  }

  private flushSync(): void {
    if (this.pending.length === 0 || this.fd === null) return;
    const text = this.pending.join('');
    this.pending = [];
    try {
      writeSync(this.fd, text);
    } catch {
      // stdout gone or full at exit: nothing more to do
    }
  }
}

/** winston's own: its `info[MESSAGE]` is the line a transport writes (triple-beam's MESSAGE symbol). */
const MESSAGE = Symbol.for('message');
const safeJson = winston.format.json();

/**
 * A JSON line by V8's JSON.stringify, not winston's json format: that one serialises with
 * safe-stable-stringify (keys sorted, cycles and BigInts allowed), configured anew for each line, and
 * makes about half the garbage of the broker's logging (one audit line per upcall: 7.6 against 3.9 KiB a
 * line, measured with 200,000 audit lines; docs/operations.md, "Logs"). Keys come in the order winston
 * set them. A line JSON.stringify refuses (a cycle, a BigInt) goes through winston's json format.
 */
const jsonLine = winston.format((info) => {
  try {
    (info as unknown as Record<symbol, string>)[MESSAGE] = JSON.stringify(info);
    return info;
  } catch {
    return safeJson.transform(info, safeJson.options);
  }
});

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
