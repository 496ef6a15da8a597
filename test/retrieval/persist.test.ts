import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Datastore, type KeyPrecision } from '../../src/retrieval/datastore.js';
import { _persistTuning, loadDatastore, readDatastoreHeader, saveDatastore } from '../../src/retrieval/persist.js';
import { randn } from '../helpers/random.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rapm-persist-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const defaultBlock = _persistTuning.blockBytes;
afterEach(() => {
  _persistTuning.blockBytes = defaultBlock;
});

const keyDim = 40, valueDim = 12;
const keyIndices = [1, 3, 5, 7, 9, 11, 13, 17, 19, 23, 29, 31, 37];
const valueIndices = [0, 2, 4, 6, 8];

function build(precision: KeyPrecision, n = 700, seed = 1, withIds = true): { ds: Datastore; ids?: string[] } {
  const ds = new Datastore({ keyDim, valueDim, keyIndices, valueIndices, precision });
  const ids = withIds ? Array.from({ length: n }, (_, i) => `utt${i % 250}`) : undefined; // repeated ids share a group
  ds.addSync(randn(n * keyDim, seed), randn(n * valueDim, seed + 1), ids);
  return { ds, ids };
}

/** Every stored row, exactly, plus ids. */
function dump(ds: Datastore): { keys: Uint8Array; values: Float32Array; groups: Int32Array; ids: string[] } {
  const n = ds.size;
  const keys = ds.precision === 'int8' ? new Int8Array(n * ds.d) : ds.precision === 'bf16' ? new Uint16Array(n * ds.d) : new Float32Array(n * ds.d);
  const values = new Float32Array(n * ds.dv);
  const groups = new Int32Array(n);
  const scales = ds.precision === 'int8' ? new Float32Array(n) : null; // int8: the key is scale * codes
  ds._exportRows(0, n, keys, values, groups, scales);
  const bytes = scales ? Buffer.concat([Buffer.from(keys.buffer), Buffer.from(scales.buffer)]) : new Uint8Array(keys.buffer);
  return { keys: bytes, values, groups, ids: ds._ids() };
}

/** Same rows, ids and settings (memoryBytes too, unless the load used many tiny blocks: one segment, one padded panel, each). */
function expectSameStore(a: Datastore, b: Datastore, sameSegments = true): void {
  expect([b.keyDim, b.valueDim, b.d, b.dv, b.precision, b.size]).toEqual([a.keyDim, a.valueDim, a.d, a.dv, a.precision, a.size]);
  if (sameSegments) expect(b.memoryBytes).toBe(a.memoryBytes);
  expect(Array.from(b.keyIndices)).toEqual(Array.from(a.keyIndices));
  expect(Array.from(b.valueIndices)).toEqual(Array.from(a.valueIndices));
  const da = dump(a), db = dump(b);
  expect(Buffer.from(db.keys).equals(Buffer.from(da.keys))).toBe(true);
  expect(Buffer.from(db.values.buffer).equals(Buffer.from(da.values.buffer))).toBe(true);
  expect(Array.from(db.groups)).toEqual(Array.from(da.groups));
  expect(db.ids).toEqual(da.ids);
}

function sameBits(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

async function codeOf(p: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await p;
  } catch (e) {
    return e as { code?: string; message: string };
  }
  throw new Error('expected a rejection');
}

describe('saveDatastore / loadDatastore: round trip', () => {
  for (const precision of ['f32', 'bf16', 'int8'] as const) {
    it(`${precision}: rows bit-exact, ids and exclusion groups kept, searches identical (many blocks)`, async () => {
      _persistTuning.blockBytes = 4096; // ~60 rows a block: exercises block edges
      const { ds } = build(precision);
      const file = path.join(tmp, `rt-${precision}.rds`);
      const res = await ds.save(file, { speakers: Array.from({ length: ds.size }, (_, i) => `spk${i % 7}`), meta: { seed: 1 } });
      expect(res).toEqual({ file, n: 700, bytes: fs.statSync(file).size });
      const back = await Datastore.load(file);
      expectSameStore(ds, back, false);
      expect(back.countOf('utt3')).toBe(ds.countOf('utt3'));
      const b = 9, q = randn(b * keyDim, 99);
      const excludeIds = Array.from({ length: b }, (_, i) => `utt${i * 3}`);
      const excludeRows = Array.from({ length: b }, (_, i) => i * 50);
      for (const opts of [{ k: 8 }, { k: 8, excludeIds }, { k: 8, excludeRows }, { k: 5, aggregate: 'mean' as const, rowRange: [100, 600] as const }]) {
        const x = ds.searchSync(q, opts), y = back.searchSync(q, opts);
        expect(sameBits(y.prior, x.prior) && sameBits(y.neighbors, x.neighbors) && sameBits(y.weights, x.weights)).toBe(true);
      }
      // Leave-one-out still excludes every row of the id after load.
      const r = back.searchSync(q.subarray(0, keyDim), { k: 20, excludeIds: ['utt0'] });
      for (const row of r.neighbors) expect(back.idOf(row)).not.toBe('utt0');
      const h = await readDatastoreHeader(file);
      expect([h.n, h.d, h.dv, h.precision, h.speakers?.[8], h.meta]).toEqual([700, keyIndices.length, valueIndices.length, precision, 'spk1', { seed: 1 }]);
    });
  }

  it('keeps ids implicit when rows were added without ids, and appends continue after load', async () => {
    const { ds } = build('f32', 300, 5, false);
    const file = path.join(tmp, 'noids.rds');
    await saveDatastore(ds, file);
    expect((await readDatastoreHeader(file)).ids).toBeNull();
    const back = await loadDatastore(file);
    expectSameStore(ds, back);
    for (const s of [ds, back]) await s.add(randn(40 * keyDim, 7), randn(40 * valueDim, 8));
    expectSameStore(ds, back);
    expect(back.idOf(320)).toBe('320');
  });

  it('an option key nothing reads is refused on save and load, before any file is touched', async () => {
    const { ds } = build('f32', 50, 6, false);
    const file = path.join(tmp, 'opts.rds');
    // fastpath (lower-case p) used to be ignored: the store loaded with the default 'auto' shadow.
    await expect(saveDatastore(ds, file, { speaker: [] } as never)).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG', message: expect.stringMatching(/'speaker' for saveDatastore \(did you mean 'speakers'\?\)/) });
    expect(fs.existsSync(file)).toBe(false);
    await saveDatastore(ds, file);
    await expect(loadDatastore(file, { fastpath: 'off' } as never)).rejects.toMatchObject({ code: 'RAPM_INVALID_ARG', message: expect.stringMatching(/'fastpath' for loadDatastore \(did you mean 'fastPath'\?\)/) });
    await expect(saveDatastore(ds, file, null as never)).rejects.toMatchObject({ code: 'RAPM_TYPE' });
    expect((await loadDatastore(file, { fastPath: 'off' })).fastPath).toBe('off');
    // meta goes into the JSON header: a BigInt, a cycle or an array is RAPM_TYPE, not a bare TypeError.
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    for (const meta of [{ a: 1n }, cyclic, [1, 2]]) {
      await expect(saveDatastore(ds, path.join(tmp, 'meta.rds'), { meta } as never)).rejects.toMatchObject({ code: 'RAPM_TYPE', message: expect.stringMatching(/Expected meta as a JSON-serialisable object/) });
    }
    expect(fs.existsSync(path.join(tmp, 'meta.rds'))).toBe(false);
  });

  it('save() writes through a symbolic link and refuses to replace a FIFO, a folder or a dangling link', async () => {
    const { ds } = build('f32', 40, 6, false);
    const dir = path.join(tmp, 'targets');
    fs.mkdirSync(dir);
    // A link: the link stays, its target gets the datastore.
    const real = path.join(dir, 'real.rds');
    fs.writeFileSync(real, 'old');
    const link = path.join(dir, 'link.rds');
    fs.symlinkSync(real, link);
    await saveDatastore(ds, link);
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
    expect((await loadDatastore(real)).size).toBe(40);
    // A FIFO (a device such as /dev/null is refused the same way): refused, left as it was.
    const fifo = path.join(dir, 'pipe.rds');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    await expect(saveDatastore(ds, fifo)).rejects.toMatchObject({ code: 'RAPM_IO', message: expect.stringMatching(/pipe\.rds: it is a FIFO \(named pipe\), not a regular file, and writing would replace it/) });
    expect(fs.lstatSync(fifo).isFIFO()).toBe(true);
    await expect(saveDatastore(ds, dir)).rejects.toMatchObject({ code: 'RAPM_IO', message: expect.stringMatching(/it is a directory/) });
    const dangling = path.join(dir, 'dangling.rds');
    fs.symlinkSync(path.join(dir, 'nowhere', 'x.rds'), dangling);
    await expect(saveDatastore(ds, dangling)).rejects.toMatchObject({ code: 'RAPM_IO', message: expect.stringMatching(/symbolic link to nothing/) });
    expect(fs.lstatSync(dangling).isSymbolicLink()).toBe(true);
    expect(fs.readdirSync(dir).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('saves an empty datastore, and only the rows present when save started', async () => {
    const empty = new Datastore({ keyDim: 4, valueDim: 2, precision: 'bf16' });
    const f0 = path.join(tmp, 'empty.rds');
    await empty.save(f0);
    expect((await loadDatastore(f0)).size).toBe(0);
    const { ds } = build('f32', 200, 9);
    const f1 = path.join(tmp, 'growing.rds');
    const saving = ds.save(f1);
    const adding = ds.add(randn(50 * keyDim, 3), randn(50 * valueDim, 4));
    await Promise.all([saving, adding]);
    const back = await loadDatastore(f1);
    expect([back.size, ds.size]).toEqual([200, 250]);
  });
});

describe('native exportRows / importRows boundary', () => {
  const thrown = (f: () => unknown): { code?: string; name?: string; message: string } => {
    try {
      f();
    } catch (e) {
      return e as { code?: string; message: string };
    }
    throw new Error('expected a throw');
  };
  it('checks kinds, lengths and ranges; a bad import adds nothing', () => {
    const f32 = build('f32', 50).ds, bf = build('bf16', 50).ds;
    const d = keyIndices.length, dv = valueIndices.length;
    expect(thrown(() => bf._exportRows(0, 2, new Float32Array(2 * d), null, null))).toMatchObject({ name: 'TypeError', code: 'RAPM_TYPE' });
    expect(thrown(() => f32._exportRows(0, 2, new Float32Array(2 * d + 1), null, null))).toMatchObject({ name: 'RangeError', code: 'RAPM_SHAPE_MISMATCH' });
    expect(thrown(() => f32._exportRows(3, 51, null, null, null)).code).toBe('RAPM_INVALID_ARG');
    expect(thrown(() => f32._exportRows(5, 4, null, null, null)).code).toBe('RAPM_INVALID_ARG');
    f32._exportRows(7, 7, null, null, null); // empty range: nothing to do
    const keys = new Float32Array(2 * d), values = new Float32Array(2 * dv), groups = new Int32Array(2);
    f32._exportRows(10, 12, keys, values, groups);
    const before = [f32.size, f32._ids().length];
    const bad = keys.slice();
    bad[3] = 5; // not unit-norm
    const e = thrown(() => f32._importRows(bad, values, ['x', 'y'], 2));
    expect([e.code, e.message]).toEqual(['RAPM_INVALID_ARG', expect.stringContaining('keys row 0: row is not unit-norm')]);
    const nanValues = values.slice();
    nanValues[dv + 1] = NaN;
    expect(thrown(() => f32._importRows(keys, nanValues, ['x', 'y'], 2))).toMatchObject({ code: 'RAPM_NON_FINITE', row: 1 });
    expect(thrown(() => f32._importRows(new Uint16Array(2 * d), values, ['x', 'y'], 2)).code).toBe('RAPM_TYPE');
    expect(thrown(() => f32._importRows(keys.subarray(1), values, ['x', 'y'], 2)).code).toBe('RAPM_SHAPE_MISMATCH');
    expect([f32.size, f32._ids().length]).toEqual(before);
    f32._importRows(keys, values, ['x', 'y'], 2);
    const s = f32.searchSync(randn(keyDim, 4), { k: 3 });
    expect([f32.size, f32.idOf(51), s.neighbors.length]).toEqual([52, 'y', 3]);
  });
});

describe('loadDatastore: refuses damaged files with RAPM_FORMAT', () => {
  const file = path.join(tmp, 'good.rds');
  let good: Buffer;
  let sectionAt: { keys: number; values: number; groups: number };
  it('writes a reference file', async () => {
    const { ds } = build('f32', 120, 3);
    await saveDatastore(ds, file);
    good = fs.readFileSync(file);
    const h = await readDatastoreHeader(file);
    sectionAt = { keys: h.sections.keys.offset, values: h.sections.values.offset, groups: h.sections.groups.offset };
  });

  const damaged = async (name: string, bytes: Uint8Array, expected: RegExp) => {
    const f = path.join(tmp, `bad-${name}.rds`);
    fs.writeFileSync(f, bytes);
    const e = await codeOf(loadDatastore(f));
    expect(e.code, e.message).toBe('RAPM_FORMAT');
    expect(e.message).toContain(f);
    expect(e.message).toMatch(expected);
  };
  const flip = (at: number) => {
    const b = Buffer.from(good);
    b[at]! ^= 0x10;
    return b;
  };

  it('wrong magic, wrong version, bad header length, flipped header byte', async () => {
    await damaged('magic', flip(1), /wrong magic/);
    const v2 = Buffer.from(good);
    v2.writeUInt32LE(2, 8);
    await damaged('version', v2, /format version 2 is not supported/);
    await damaged('hlen', flip(13), /header length|header checksum/);
    await damaged('header', flip(40), /header checksum mismatch/);
    await damaged('text', Buffer.from('{"not": "a datastore"}'), /wrong magic/);
    await damaged('zero', new Uint8Array(0), /wrong magic/);
  });

  it('flipped payload bytes name the section', async () => {
    await damaged('keys', flip(sectionAt.keys + 17), /checksum mismatch in the keys section/);
    await damaged('values', flip(sectionAt.values + 5), /checksum mismatch in the values section/);
    await damaged('groups', flip(sectionAt.groups + 2), /checksum mismatch in the groups section/);
    await damaged('digest', flip(good.length - 50), /checksum mismatch/);
    await damaged('end', flip(good.length - 1), /end marker/);
  });

  it('truncated files (cut tail, cut to half, cut to the prefix)', async () => {
    await damaged('cut1', good.subarray(0, good.length - 1), /end marker|truncated/);
    await damaged('cut-half', good.subarray(0, good.length >> 1), /end marker|truncated/);
    await damaged('cut-prefix', good.subarray(0, 12), /truncated/);
    const extended = Buffer.concat([good, Buffer.from('RAPMEND\n')]);
    await damaged('extended', extended, /header checksum|trailing data|checksum mismatch/);
  });

  it('valid checksums over invalid rows (a crafted file) are refused too', async () => {
    const b = Buffer.from(good);
    b.writeFloatLE(3, sectionAt.keys); // key row 0 is no longer unit-norm
    const trailer = b.length - (4 * 32 + 8);
    const keys = createHash('sha256').update(b.subarray(sectionAt.keys, sectionAt.values)).digest();
    keys.copy(b, trailer + 32);
    await damaged('crafted', b, /keys row 0: row is not unit-norm/);
  });

  it('a missing file is RAPM_IO', async () => {
    const e = await codeOf(loadDatastore(path.join(tmp, 'nope.rds')));
    expect(e.code).toBe('RAPM_IO');
    expect(e.message).toContain('nope.rds');
  });
});

describe('saveDatastore: atomic and fails cleanly', () => {
  it('an unwritable destination is RAPM_IO and leaves no temporary file', async () => {
    const { ds } = build('f32', 20, 4);
    for (const target of [path.join(tmp, 'no-such-dir', 'x.rds'), path.join(tmp, 'good.rds', 'x.rds')]) {
      const e = await codeOf(saveDatastore(ds, target));
      expect(e.code).toBe('RAPM_IO');
      expect(e.message).toContain(target);
    }
    if (process.getuid?.() !== 0) {
      const ro = path.join(tmp, 'ro');
      fs.mkdirSync(ro);
      fs.chmodSync(ro, 0o500);
      const e = await codeOf(saveDatastore(ds, path.join(ro, 'x.rds')));
      expect([e.code, /EACCES/.test(e.message)]).toEqual(['RAPM_IO', true]);
    }
    expect(fs.readdirSync(tmp).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('SIGKILL during a save leaves the previous file intact and loadable', async () => {
    const file = path.join(tmp, 'killed.rds');
    const child = path.join(tmp, 'save-loop.mts');
    const url = (p: string) => pathToFileURL(path.join(root, p)).href;
    fs.writeFileSync(
      child,
      `const { Datastore } = await import(${JSON.stringify(url('src/retrieval/datastore.ts'))});
const { saveDatastore } = await import(${JSON.stringify(url('src/retrieval/persist.ts'))});
const [file, refA, refB] = process.argv.slice(2);
const make = (seed) => {
  let s = seed;
  const r = (n) => Float32Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5);
  const ds = new Datastore({ keyDim: 256, valueDim: 8 });
  ds.addSync(r(24000 * 256), r(24000 * 8));
  return ds;
};
const a = make(1), b = make(2);
await saveDatastore(a, refA);
await saveDatastore(b, refB);
await saveDatastore(a, file);
process.stdout.write('ready\\n');
for (let i = 0; ; i++) await saveDatastore(i % 2 ? a : b, file);
`,
    );
    const refA = path.join(tmp, 'ref-a.rds'), refB = path.join(tmp, 'ref-b.rds');
    // Kill while a temporary file is being written (the save loop is mid-write). The proof
    // that the kill landed mid-save: the dead child's temporary is still there afterwards
    // (it removes its own temporary on every path it can run). Retried in the unlikely case
    // the kill lands between a rename and the next open.
    let leftovers: string[] = [];
    let childPid = 0;
    for (let attempt = 0; attempt < 3 && leftovers.length === 0; attempt++) {
      const proc = spawn(process.execPath, ['--import', 'tsx', child, file, refA, refB], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve, reject) => {
        proc.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
        proc.on('exit', (c) => reject(new Error(`child exited early (${c})`)));
      });
      let tmpSeen = '';
      const deadline = Date.now() + 10_000;
      while (!tmpSeen && Date.now() < deadline) {
        const t = fs.readdirSync(tmp).find((f) => f.startsWith('killed.rds.tmp-'));
        if (t) {
          try {
            if (fs.statSync(path.join(tmp, t)).size > 0) tmpSeen = t;
          } catch {
            /* renamed meanwhile */
          }
        }
        if (!tmpSeen) await new Promise((r) => setTimeout(r, 1));
      }
      const exited = new Promise<NodeJS.Signals | null>((r) => proc.on('exit', (_c, sig) => r(sig)));
      proc.kill('SIGKILL');
      expect(await exited).toBe('SIGKILL');
      expect(tmpSeen).not.toBe('');
      childPid = proc.pid!;
      leftovers = fs.readdirSync(tmp).filter((f) => f.startsWith(`killed.rds.tmp-${childPid}-`));
    }
    expect(leftovers.length).toBe(1); // killed mid-save: its temporary was never cleaned
    const back = await loadDatastore(file);
    const [a, b] = [await loadDatastore(refA), await loadDatastore(refB)];
    const same = (x: Datastore) => Buffer.from(dump(back).keys).equals(Buffer.from(dump(x).keys)) && sameBits(dump(back).values, dump(x).values);
    expect(same(a) || same(b)).toBe(true);

    // The next save to the same target removes the dead writer's temporary, and only that:
    // a live process's temporary (a concurrent save), another target's, and look-alikes stay.
    const keep = [
      `killed.rds.tmp-${process.pid}-0123abcd`, // live pid (this process)
      `killed.rds.tmp-${process.ppid}-0123abcd`, // live pid (our parent)
      `other.rds.tmp-${childPid}-0123abcd`, // dead pid, other target
      `killed.rds.tmp-${childPid}-notes.txt`, // not the temp pattern
      `killed.rds.tmp-${childPid}-0123abcd.bak`,
      `xkilled.rds.tmp-${childPid}-0123abcd`,
    ];
    for (const f of keep) fs.writeFileSync(path.join(tmp, f), 'x');
    const small = new Datastore({ keyDim: 4, valueDim: 1 });
    small.addSync(new Float32Array([1, 0, 0, 0]), new Float32Array([1]));
    await saveDatastore(small, file);
    const after = fs.readdirSync(tmp);
    expect(after.filter((f) => f.startsWith(`killed.rds.tmp-${childPid}-`)).sort()).toEqual(keep.filter((f) => f.startsWith(`killed.rds.tmp-${childPid}-`)).sort());
    for (const f of keep) expect(after).toContain(f);
    expect(after).not.toContain(leftovers[0]);
    for (const f of keep) fs.rmSync(path.join(tmp, f));
  }, 150_000); // child processes: ~15 s, several times that under ASan (LD_PRELOAD is inherited)
});
