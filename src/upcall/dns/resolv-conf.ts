/**
 * resolv.conf(5) as glibc reads it: up to 3 nameservers (MAXNS), a search list
 * (the last `search` or `domain` line wins), and options ndots (max 15),
 * timeout (max 30 s), attempts (max 5), rotate. No nameserver means the local
 * one (127.0.0.1), as in glibc.
 */
export interface ResolvConf {
  nameservers: string[];
  search: string[];
  ndots: number;
  timeoutSeconds: number;
  attempts: number;
  rotate: boolean;
}

const MAXNS = 3;
const MAXDNSRCH = 6;

export function parseResolvConf(text: string): ResolvConf {
  const conf: ResolvConf = { nameservers: [], search: [], ndots: 1, timeoutSeconds: 5, attempts: 2, rotate: false };
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const [keyword, ...args] = line.split(/\s+/);
    if (keyword === 'nameserver' && args[0] !== undefined && conf.nameservers.length < MAXNS && isAddress(args[0])) {
      conf.nameservers.push(args[0]);
    } else if (keyword === 'search' || keyword === 'domain') {
      conf.search = args.filter((d) => d !== '' && d !== '.').map((d) => d.replace(/\.$/, '')).slice(0, MAXDNSRCH);
    } else if (keyword === 'options') {
      for (const opt of args) applyOption(conf, opt);
    }
  }
  if (conf.nameservers.length === 0) conf.nameservers.push('127.0.0.1');
  return conf;
}

function applyOption(conf: ResolvConf, opt: string): void {
  const [name, value] = opt.split(':');
  const n = value === undefined ? NaN : Number.parseInt(value, 10);
  if (name === 'ndots' && n >= 0) conf.ndots = Math.min(n, 15);
  else if (name === 'timeout' && n >= 1) conf.timeoutSeconds = Math.min(n, 30);
  else if (name === 'attempts' && n >= 1) conf.attempts = Math.min(n, 5);
  else if (name === 'rotate') conf.rotate = true;
}

function isAddress(s: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(s) || /^[0-9a-fA-F:]+$/.test(s);
}

/**
 * The names to try, in glibc's res_search order: a trailing dot means only the
 * name itself; with at least `ndots` dots the name as given comes first, then
 * the search list; with fewer, the search list first, then the name as given.
 */
export function candidateNames(name: string, conf: ResolvConf): string[] {
  if (name.endsWith('.')) return [name.slice(0, -1)];
  const dots = name.split('.').length - 1;
  const searched = conf.search.map((d) => `${name}.${d}`);
  return dots >= conf.ndots ? [name, ...searched] : [...searched, name];
}
