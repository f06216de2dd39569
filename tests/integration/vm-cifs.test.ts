/**
 * Real CIFS in the namespace test VMs (Debian kernels 6.1 and 6.12): the guest
 * side is tests/integration/vm/cifs.sh (smbd in its own netns, a container whose
 * own DNS server alone knows the server's name, the broker, `mount --for-pid`, a
 * read; the server moves, only the container's DNS learns it, the connection is
 * cut, and cifsd's own dns_resolver request is routed by the registration; the
 * netns rule against a user-namespaced requester with its own /etc/hosts). Here
 * the host boots each guest and checks what the script reports. Inside a guest
 * (UB_VM_KERNEL set) the script runs on that kernel directly.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { RegistrationInfo } from '../../src/common/types.js';
import { GUEST_KERNELS, runGuestScriptRetrying, type GuestRun } from '../helpers/guest-script.js';

const PF_KTHREAD = 0x00200000;

for (const kernel of GUEST_KERNELS) {
  describe(`CIFS in a namespace test VM, kernel ${kernel}`, () => {
    let results: Map<string, string[]>;
    let log = '';
    const one = (k: string) => results.get(k)?.[0] ?? '';
    const why = () => `\n--- guest output ---\n${log.slice(-6000)}`;

    test('the guest runs the scenario to its end', { timeout: 40 * 60_000 }, async (t) => {
      const run = await runGuestScriptRetrying('cifs.sh', kernel, (r: GuestRun) => r.status === 0 && r.results.has('done')
        && r.results.get('mount-exit')?.[0] === '0' && /^hello-r\d+$/.test(r.results.get('read-1')?.[0] ?? '') && /^moved-r\d+$/.test(r.results.get('read-2')?.[0] ?? ''));
      if (run.firstAttempt) t.diagnostic(`the first run in the guest failed; these results are the second's. First run:\n${run.firstAttempt.slice(-3000)}`);
      ({ results, log } = run);
      const status = run.status;
      assert.equal(status, 0, `guest exit ${status}${why()}`);
      assert.ok(results.has('done'), `the script did not finish${why()}`);
    });

    test('the guest\'s own namespaces cannot resolve the name: a plain mount fails', () => {
      assert.match(one('host-mount'), /^failed .*could not resolve/, why());
    });

    test('mount --for-pid mounts //files.<run>.test/share for the container, registered live, and a file reads back', () => {
      assert.equal(one('mount-exit'), '0', why());
      const reg = JSON.parse(one('mount-json')) as RegistrationInfo;
      assert.equal(reg.state, 'live');
      assert.equal(reg.fstype, 'cifs');
      assert.match(reg.source ?? '', /^\/\/files\.r\d+\.test\/share$/);
      assert.equal(String(reg.context.initPid), one('container-init'));
      assert.match(one('read-1'), /^hello-r\d+$/, why());
    });

    test('reconnect: cifsd (a kernel thread in the host\'s netns) asks, the registration routes it to the container, the next read succeeds', () => {
      assert.match(one('read-2'), /^moved-r\d+$/, why());
      const audits = (results.get('audit') ?? []).map((l) => JSON.parse(l) as Record<string, unknown>);
      const routed = audits.find((a) => a['route'] === 'kthread-registration' && a['action'] === 'instantiate');
      assert.ok(routed, `no kernel-thread request routed by the registration: ${JSON.stringify(audits)}`);
      assert.match(String(routed['reason']), /^10\.1\.0\.3 /, 'the container\'s DNS server\'s new address');
      assert.ok(Number(routed['expirySeconds']) <= 10, 'expiry capped');
      const requester = (results.get('requester') ?? []).find((l) => l.startsWith(`${String(routed['requesterPid'])} `));
      assert.ok(requester, `requester not seen: ${JSON.stringify(results.get('requester'))}`);
      const flags = Number(/flags=(\d+)/.exec(requester)![1]);
      assert.ok((flags & PF_KTHREAD) !== 0, `a kernel thread: ${requester}`);
      assert.ok(requester.endsWith(`net=${one('netns-host')}`), `in the host's netns: ${requester}`);
    });

    test('netns rule: a user-namespaced process in the host\'s netns with its own /etc/hosts is answered as the host, and so is the host after it', () => {
      assert.doesNotMatch(one('poison-userns'), /10\.66\.6\.6/, why());
      assert.match(one('poison-userns'), /Required key not available/);
      assert.doesNotMatch(one('poison-host'), /10\.66\.6\.6/);
      const audits = (results.get('poison-audit') ?? []).map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.ok(audits.length >= 1 && audits.every((a) => a['route'] === 'netns-host' && a['action'] === 'decline'), JSON.stringify(audits));
    });

    test('after umount in the container, the registration is unmounted', () => {
      assert.equal((JSON.parse(one('after-umount')) as RegistrationInfo).state, 'unmounted', why());
    });
  });
}
