import { isDir, isFile, names, writeFile } from '../driver.js';
import type { Case } from '../suite.js';

/** readdir(3): what a folder lists, also while it changes. */
export const cases: Case[] = [
  {
    name: 'a folder lists exactly its files and folders, each with its type',
    async run(t, fs) {
      await fs.mkdir('/sub', 0o755);
      await writeFile(fs, '/a.txt', 'a');
      await writeFile(fs, '/sub/inner', 'i');
      await writeFile(fs, '/€ uni code', 'u');
      t.same(await names(fs, '/'), ['a.txt', 'sub', '€ uni code'], 'names, one each');
      t.ok(isDir(await fs.stat('/sub')), 'sub is a folder');
      t.ok(isFile(await fs.stat('/a.txt')), 'a.txt is a file');
      t.same(await names(fs, '/sub'), ['inner'], 'a sub-folder lists its own');
      await fs.settle();
      t.same(await names(fs, '/'), ['a.txt', 'sub', '€ uni code'], 'the same once committed');
    },
  },
  {
    name: 'listings taken while files are created, renamed and removed show every untouched entry once and nothing invented',
    async run(t, fs) {
      const stable = Array.from({ length: 20 }, (_, i) => `stable-${String(i).padStart(2, '0')}`);
      for (const n of stable) await writeFile(fs, `/${n}`, n);
      const doomed = Array.from({ length: 10 }, (_, i) => `doomed-${i}`);
      for (const n of doomed) await writeFile(fs, `/${n}`, n);
      const born = Array.from({ length: 10 }, (_, i) => `born-${i}`);
      const allowed = new Set([...stable, ...doomed, ...born, ...doomed.map((n) => `${n}.moved`)]);
      const problems: string[] = [];
      let listings = 0;
      let changing = true;
      const lister = (async () => {
        while (changing || listings < 3) {
          const got = await fs.readdir('/');
          listings++;
          const seen = new Map<string, number>();
          for (const n of got) seen.set(n, (seen.get(n) ?? 0) + 1);
          for (const n of stable) if (seen.get(n) !== 1) problems.push(`listing ${listings}: ${n} seen ${seen.get(n) ?? 0} times`);
          for (const [n, c] of seen) {
            if (!allowed.has(n)) problems.push(`listing ${listings}: unexpected ${n}`);
            else if (c > 1) problems.push(`listing ${listings}: ${n} twice`);
          }
        }
      })();
      for (let i = 0; i < 10; i++) {
        await writeFile(fs, `/${born[i]}`, 'new');
        if (i % 2) await fs.unlink(`/${doomed[i]}`);
        else await fs.rename(`/${doomed[i]}`, `/${doomed[i]}.moved`);
      }
      changing = false;
      await lister;
      t.same(problems, [], `${listings} listings taken while the folder changed: each consistent`);
      const want = [...stable, ...born, ...doomed.filter((_, i) => i % 2 === 0).map((n) => `${n}.moved`)].sort();
      t.same(await names(fs, '/'), want, 'the final listing is exactly what is there');
      await fs.settle();
      t.same(await names(fs, '/'), want, 'also once committed');
    },
  },
  {
    name: 'an empty folder lists nothing; a new folder is empty',
    async run(t, fs) {
      t.same(await names(fs, '/'), [], 'the fresh case folder');
      await fs.mkdir('/d', 0o700);
      t.same(await names(fs, '/d'), []);
    },
  },
  {
    name: "a folder's link count is 2 plus its sub-folders, as they are made, removed and moved; a file's is 1",
    async run(t, fs) {
      const links = async (p: string) => (await fs.stat(p)).nlink;
      await fs.mkdir('/d', 0o755);
      t.equal(await links('/d'), 2, 'an empty folder: 2');
      await fs.mkdir('/d/a', 0o755);
      await fs.mkdir('/d/b', 0o755);
      await writeFile(fs, '/d/f', 'a file does not count');
      t.equal(await links('/d'), 4, 'two sub-folders and a file: 4');
      t.equal(await links('/d/f'), 1, 'a file: 1');
      await fs.rmdir('/d/a');
      t.equal(await links('/d'), 3, 'one sub-folder removed: 3');
      await fs.mkdir('/e', 0o755);
      await fs.rename('/d/b', '/e/b');
      t.equal(await links('/d'), 2, 'its last sub-folder moved out: 2');
      t.equal(await links('/e'), 3, 'moved in: 3');
      await fs.mkdir('/e/c', 0o755);
      await fs.rename('/e/b', '/e/c');
      t.equal(await links('/e'), 3, 'a sub-folder renamed over an empty one: still 3');
      t.equal(await links('/'), 4, 'the case folder holds d and e: 4');
      await fs.settle();
      t.same([await links('/'), await links('/d'), await links('/e')], [4, 2, 3], 'the same once committed');
    },
  },
];
