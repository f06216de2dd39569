import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MountHelperRoutes, parseStat, type ProcStat } from '../../src/broker/mount-helper-routes.js';
import { mountAt, stillMounted } from '../../src/broker/mount-watcher.js';

/** A fake process tree: pid -> [ppid, start time]. */
const tree: Record<number, [number, number]> = { 500: [1, 10], 501: [500, 11], 502: [501, 12], 600: [1, 20] };
const stat = (pid: number): ProcStat | null => (tree[pid] ? { ppid: tree[pid][0], flags: 0, startTime: tree[pid][1] } : null);

describe('MountHelperRoutes: requests of a mount helper we run, and of its children', () => {
  test('the helper, its child and grandchild (mount → mount.cifs → ...) are routed to its context; others not', () => {
    const routes = new MountHelperRoutes();
    routes.add(500, 10, 'c-1');
    assert.equal(routes.contextOf(500, stat), 'c-1');
    assert.equal(routes.contextOf(502, stat), 'c-1');
    assert.equal(routes.contextOf(600, stat), null);
    routes.remove(500);
    assert.equal(routes.contextOf(502, stat), null);
  });

  test('a reused pid (another start time) is not the helper', () => {
    const routes = new MountHelperRoutes();
    routes.add(500, 9, 'c-1');
    assert.equal(routes.contextOf(501, stat), null);
  });

  test('parseStat reads ppid, flags and start time after a command name with spaces and parentheses', () => {
    const line = '42 (a (b) c) S 7 42 42 0 -1 2097216 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0';
    assert.deepEqual(parseStat(line), { ppid: 7, flags: 2097216, startTime: 12345 });
  });
});

describe('mountinfo: the mount at a mount point, and whether it is still there', () => {
  const info = [
    '22 1 0:21 / / rw - ext4 /dev/vda rw',
    '40 22 0:30 / /mnt rw - tmpfs base rw',
    '41 40 0:31 / /mnt/my\\040share rw - cifs //h/s rw',
    '42 41 0:32 / /mnt/my\\040share rw - tmpfs over rw',
  ].join('\n');

  test('the topmost mount at a path (octal escapes undone)', () => {
    assert.equal(mountAt(info, '/mnt/my share'), 42);
    assert.equal(mountAt(info, '/mnt'), 40);
    assert.equal(mountAt(info, '/nowhere'), null);
  });

  test('a mount is still there only with its id at its mount point', () => {
    assert.equal(stillMounted(info, 41, '/mnt/my share'), true);
    assert.equal(stillMounted(info, 41, '/mnt'), false);
    assert.equal(stillMounted(info, 43, '/mnt/my share'), false);
  });
});
