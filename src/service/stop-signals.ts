import type { Signals } from '../common/tokens.js';

/**
 * The broker's own signals (docs/operations.md): SIGHUP runs `onReload` as
 * often as it comes, for the life of the process (also while stopping: a
 * SIGHUP must not end a broker mid-stop); the first SIGTERM or SIGINT ends the
 * wait, returning its name, and removes both stop handlers, so a second one
 * during the stop takes Node's default action (the process ends at once).
 */
export function untilStopSignal(signals: Signals, onReload: () => void): Promise<NodeJS.Signals> {
  signals.on('SIGHUP', onReload);
  return new Promise((resolve) => {
    const removals: Array<() => void> = [];
    const stop = (signal: NodeJS.Signals) => () => {
      for (const remove of removals.splice(0)) remove();
      resolve(signal);
    };
    removals.push(signals.on('SIGTERM', stop('SIGTERM')), signals.on('SIGINT', stop('SIGINT')));
  });
}
