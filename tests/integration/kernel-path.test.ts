/**
 * The kernel-path suites (tests/kernel-path/: request-key through the real kernel
 * from inside containers, the request-key flood, the README walkthrough), run where
 * the kernel can serve them: here when this machine's kernel runs request-key
 * upcalls for user-namespace callers, else in a namespace test VM booting Debian's
 * 6.12 kernel (tests/helpers/kernel-path.ts). Each of their tests is reported here
 * by name, with where it ran; a failure there is a failure here. Never skipped.
 */
import assert from 'node:assert/strict';
import { basename } from 'node:path';
import { before, describe, test } from 'node:test';
import { kernelPathFiles, kernelPathSite, runInGuestRetrying, runOnHost, type Site, type SuiteRun } from '../helpers/kernel-path.js';
import { leafCases } from '../helpers/tap.js';

const files = kernelPathFiles();
let site: Site;
let runs: SuiteRun[] = [];

describe('kernel-path suites', () => {
  before(async () => {
    site = await kernelPathSite();
    runs = site.kind === 'host' ? await runOnHost(files) : (await runInGuestRetrying(files, site.kernel)).runs;
  });

  for (const file of files) {
    test(basename(file), async (t) => {
      const r = runs.find((x) => x.file === file);
      assert.ok(r, `${file} did not run (${site.why})`);
      const cases = leafCases(r.tap);
      t.diagnostic(`${basename(file)}: ran in ${r.where} (${site.why}): ${r.tap.counts.pass ?? 0} pass, ${r.tap.counts.fail ?? 0} fail, ${r.tap.counts.todo ?? 0} todo`);
      if (r.retried) t.diagnostic(`${basename(file)}: the first attempt in the guest failed (${r.retried.join('; ')}); these results are the second's`);
      for (const c of cases) {
        await t.test(`${c.path.join(' › ')} [${r.where}]`, { todo: c.directive === 'todo' }, () => {
          if (!c.ok) assert.fail(c.diag || 'failed');
        });
      }
      assert.ok(cases.length > 0, `${file} reported no test (exit ${r.status}): ${r.stderr.slice(-3000)}`);
      assert.equal(r.tap.counts.skipped ?? 0, 0, `${file}: nothing is skipped`);
      assert.equal(r.status, 0, `${file} exited ${r.status}: ${r.stderr.slice(-3000)}`);
    });
  }
});
