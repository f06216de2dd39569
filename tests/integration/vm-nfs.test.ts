/**
 * NFSv4 in the namespace test VMs (Debian kernels 6.1 and 6.12): knfsd serves an
 * export from its own network namespace (guest side tests/integration/vm/nfs.sh);
 * a container's own DNS server alone knows the server's name; `mount --for-pid`
 * mounts the export for the container by that name, and a file reads back. The
 * NFS client re-uses the address on reconnect (no dns_resolver request), so
 * there is no reconnect step; the kernel's upcall after the mount is the
 * referral's (knfsd `refer=`): the client resolves the referral's server name
 * through a dns_resolver key when a walk crosses it, asked by the walking
 * process and cached in the mount's network namespace (docs/request-key.md,
 * "Kernel behaviour"; docs/walk-rule.md, case 8).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { RegistrationInfo } from '../../src/common/types.js';
import { GUEST_KERNELS, runGuestScriptRetrying, type GuestRun } from '../helpers/guest-script.js';

type Audit = Record<string, unknown>;

for (const kernel of GUEST_KERNELS) {
  describe(`NFSv4 in a namespace test VM, kernel ${kernel}`, () => {
    let results: Map<string, string[]>;
    let log = '';
    const one = (k: string) => results.get(k)?.[0] ?? '';
    const why = () => `\n--- guest output ---\n${log.slice(-6000)}`;
    const auditsFor = (name: string) => (results.get('audit') ?? []).map((l) => JSON.parse(l) as Audit)
      .filter((a) => String(a['description']).startsWith(`${name}.`));

    test('the guest runs the scenario to its end', { timeout: 40 * 60_000 }, async (t) => {
      const run = await runGuestScriptRetrying('nfs.sh', kernel, (r: GuestRun) => r.status === 0 && r.results.has('done')
        && r.results.get('mount-exit')?.[0] === '0' && /^nfs-hello-r\d+$/.test(r.results.get('read-1')?.[0] ?? '')
        && /^0 nfs-referral-r\d+ $/.test(r.results.get('ref-read')?.[0] ?? '') && /^0 nfs-referral-r\d+ $/.test(r.results.get('foreign-read')?.[0] ?? ''));
      if (run.firstAttempt) t.diagnostic(`the first run in the guest failed; these results are the second's. First run:\n${run.firstAttempt.slice(-3000)}`);
      ({ results, log } = run);
      t.diagnostic(`kernel ${run.results.get('kernel')?.[0] ?? '?'}; request-key audits:\n${(run.results.get('audit') ?? []).join('\n')}\nhost sockets: ${run.results.get('host-sockets')?.[0] ?? ''}`);
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

    test('a referral walked with keyutils\' rule alone (the host\'s resolver) fails', () => {
      assert.match(one('ref-keyutils'), /^[1-9]\d* .*No such file or directory/, why());
      assert.equal(auditsFor('ctl').length, 0, 'the broker was not asked');
    });

    test('the container walks into a referral: its own process asks, in its netns (netns-walk), the container\'s DNS answers, the file reads', () => {
      assert.match(one('ref-read'), /^0 nfs-referral-r\d+ $/, why());
      const audits = auditsFor('files2');
      assert.equal(audits.length, 1, JSON.stringify(audits));
      const a = audits[0]!;
      assert.equal(String(a['requesterPid']), one('ref-walker'), 'the walking process is the requester, not a kernel thread');
      assert.equal(a['route'], 'netns-walk');
      assert.equal(a['action'], 'instantiate');
      assert.match(String(a['reason']), /^10\.1\.0\.3 /, 'the container\'s DNS server\'s address');
      assert.equal(a['context'], (JSON.parse(one('mount-json')) as RegistrationInfo).context.id);
    });

    test('the key is cached in the mount\'s netns: the same referral walked from the guest\'s netns asks nothing and reads', () => {
      assert.match(one('agent-read'), /^nfs-referral-r\d+ exit=0 $/, why());
      assert.equal(one('agent-new-requests'), '0');
    });

    test('a mount made in the host\'s netns in view: the container\'s walk is answered as on the host (netns-foreign-mount), and the host never uses the container\'s address', () => {
      assert.match(one('foreign-mount'), /^0 /, why());
      assert.match(one('foreign-read'), /^0 nfs-referral-r\d+ $/, why());
      const audits = auditsFor('files3');
      assert.ok(audits.length >= 1, why());
      const [first, ...later] = audits;
      assert.equal(String(first!['requesterPid']), one('foreign-walker'));
      assert.equal(first!['route'], 'netns-foreign-mount', JSON.stringify(first));
      assert.equal(first!['action'], 'decline', 'keyutils\' handler answers, with the host\'s /etc/hosts');
      assert.ok(later.every((a) => a['route'] === 'netns-host'), JSON.stringify(later));
      assert.match(one('host-after-foreign'), /^nfs-referral-r\d+ exit=0 $/, why());
      assert.doesNotMatch(one('host-sockets'), /10\.2\.0\.3:2049/, 'the container\'s answer (10.2.0.3) was never used');
      assert.match(one('host-sockets'), /10\.2\.0\.2:2049/);
    });
  });
}
