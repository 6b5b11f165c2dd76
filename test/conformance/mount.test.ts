import t from 'tap';
import { mountDrive, startServerProcess } from '../helpers/drive.js';
import { MountDriver } from './mount-driver.js';
import { runSuite } from './suite.js';

/*
 * The conformance suite (test/conformance/suite.ts) on a real FUSE mount: a `stratus mount`
 * process of a `stratus serve` process, on its own temp mountpoint (unmounted at teardown,
 * also when a case fails), every call through node:fs/promises and the kernel. A failing call
 * must not move the server's change cursor.
 */

const server = await startServerProcess(t);
const { token, client } = await server.addUser('conformance');
const drive = await mountDrive(t, server, token);
const driver = new MountDriver(drive, client);

await runSuite(t, driver, { only: process.env.STRATUS_CONFORMANCE_ONLY ? new RegExp(process.env.STRATUS_CONFORMANCE_ONLY) : undefined });

t.test('after the suite: every descriptor closed, and the drive stops cleanly with everything committed', async (t) => {
  t.equal(driver.openDescriptors, 0, 'the cases closed what they opened');
  t.equal(await drive.stop(), 0, 'the mount drains and exits 0');
});
