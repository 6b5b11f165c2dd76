import t from 'tap';
import { helperArgs } from '../../cli/mount-helper-args.js';

/** How `mount.fuse.stratus` turns what mount(8) passes into `stratus mount` arguments (cli/mount-helper-args.ts). */

t.test('an fstab line: the server from SOURCE, -o key=value as flags, what mount(8) and systemd act on dropped', async (t) => {
  const h = helperArgs(['http://10.0.0.5:7420', '/home/me/Stratus', '-o', 'rw,noauto,user,_netdev,nofail,x-systemd.automount,comment=x,cache_size=20GB,token_file=/home/me/.config/stratus/token,allow_other,drain_timeout=30']);
  t.same(h.args, ['/home/me/Stratus', '--server', 'http://10.0.0.5:7420', '--cache-size', '20GB', '--token-file', '/home/me/.config/stratus/token', '--allow-other', '--drain-timeout', '30']);
  t.same(h.env, {}, 'nothing in the environment');
  t.equal(h.fake, false);
});

t.test('token= goes in the environment, not on the command line (ps shows that)', async (t) => {
  const h = helperArgs(['http://h:1', '/mnt/s', '-o', 'token=stx_secret']);
  t.same(h.args, ['/mnt/s', '--server', 'http://h:1']);
  t.same(h.env, { STRATUS_TOKEN: 'stx_secret' });
});

t.test('flags of mount(8): -f fakes, -v is verbose, -n -s -t -N are accepted; -oOPTS and several -o', async (t) => {
  const h = helperArgs(['stratus', '/mnt/s', '-fnv', '-s', '-t', 'fuse.stratus', '-N', '/proc/1/ns/mnt', '-ocache=/var/cache/s', '-o', 'device=lab\\,2']);
  t.same(h.args, ['/mnt/s', '--cache', '/var/cache/s', '--device', 'lab,2'], 'a SOURCE that is no URL leaves the server to the config file; \\, keeps a comma');
  t.equal(h.fake, true);
  t.equal(h.verbose, true);
});

t.test('refusals, each saying why', async (t) => {
  t.throws(() => helperArgs(['http://h:1', '/mnt/s', '-o', 'ro']), /read-only mounts \(ro\) are not supported/);
  t.throws(() => helperArgs(['http://h:1']), /usage: mount\.fuse\.stratus SERVER MOUNTPOINT/);
  t.throws(() => helperArgs(['http://h:1', '/mnt/s', '-o']), /-o needs a value/);
  t.throws(() => helperArgs(['http://h:1', '/mnt/s', '--bogus']), /unknown helper option --bogus/);
  t.throws(() => helperArgs(['http://h:1', '/mnt/s', '-o', 'Cache Size=1']), /not a mount option: "Cache Size=1"/);
});
