import { unlinkSync } from 'node:fs';

/**
 * Remove `path` when this process exits or is told to stop, even if a test's
 * after() hook never runs: a rule file left under /etc/request-key.d/ would
 * route real kernel upcalls for everyone after us. Returns the remover.
 */
export function removeOnExit(path: string): () => void {
  const remove = () => {
    try {
      unlinkSync(path);
    } catch {
      // not there: fine
    }
  };
  process.on('exit', remove);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      remove();
      process.kill(process.pid, sig);
    });
  }
  return remove;
}
