/**
 * NFSv4 in the namespace test VMs (Debian kernels 6.1 and 6.12): knfsd serves an
 * export from its own network namespace (guest side tests/integration/vm/nfs.sh);
 * a container's own DNS server alone knows the server's name; `mount --for-pid`
 * mounts the export for the container by that name, and a file reads back. The
 * NFS client re-uses the address on reconnect (no dns_resolver request), so
 * there is no reconnect step here; referrals are not set up.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { RegistrationInfo } from '../../src/common/types.js';
import { GUEST_KERNELS, runGuestScriptRetrying, type GuestRun } from '../helpers/guest-script.js';

for (const kernel of GUEST_KERNELS) {
  describe(`NFSv4 in a namespace test VM, kernel ${kernel}`, () => {
    let results: Map<string, string[]>;
    let log = '';
    const one = (k: string) => results.get(k)?.[0] ?? '';
    const why = () => `\n--- guest output ---\n${log.slice(-6000)}`;

    test('the guest runs the scenario to its end', { timeout: 40 * 60_000 }, async (t) => {
      const run = await runGuestScriptRetrying('nfs.sh', kernel, (r: GuestRun) => r.status === 0 && r.results.has('done')
        && r.results.get('mount-exit')?.[0] === '0' && /^nfs-hello-r\d+$/.test(r.results.get('read-1')?.[0] ?? ''));
      if (run.firstAttempt) t.diagnostic(`the first run in the guest failed; these results are the second's. First run:\n${run.firstAttempt.slice(-3000)}`);
      ({ results, log } = run);
      assert.equal(run.status, 0, `guest exit ${run.status}${why()}`);
      assert.ok(results.has('done'), `the script did not finish${why()}`);
    });

    test('the guest\'s own namespaces cannot resolve the name: a plain mount fails', () => {
      assert.match(one('host-mount'), /^failed /, why());
    });

    test('mount --for-pid mounts nfs.<run>.test:/ for the container, registered live, and a file reads back', () => {
      assert.equal(one('mount-exit'), '0', why());
      const reg = JSON.parse(one('mount-json')) as RegistrationInfo;
      assert.equal(reg.state, 'live');
      assert.equal(reg.fstype, 'nfs4');
      assert.match(reg.source ?? '', /^nfs\.r\d+\.test:\/$/);
      assert.equal(String(reg.context.initPid), one('container-init'));
      assert.match(one('read-1'), /^nfs-hello-r\d+$/, why());
    });
  });
}
