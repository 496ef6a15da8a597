/**
 * `rapm pg-load --datastore FILE --pg-url postgres://... [--pg-table T] [--pg-index hnsw]`:
 * load a saved datastore's keys (after key selection, L2-normalised) and utterance ids into a
 * PostgreSQL + pgvector table, in one transaction, for `rapm serve --pg-url`.
 */
import type { CommandModule } from 'yargs';
import { loadDatastore } from '../../retrieval/persist.js';
import { checkPgUrl, loadDatastoreIntoPg, quoteTable } from '../../retrieval/pgvector.js';
import { defineCommand } from '../options.js';

export const pgLoadCommand: CommandModule = defineCommand({
  command: 'pg-load',
  describe: 'Load a saved datastore into PostgreSQL + pgvector (keys and ids; one transaction) for `rapm serve --pg-url`',
  settings: ['datastore', 'pgUrl', 'pgTable', 'pgIndex', 'pgTimeoutMs', 'overwrite', 'batchSize', 'quiet', 'json'],
  overrides: {
    datastore: { demand: true },
    pgUrl: { demand: true },
    overwrite: { help: 'Drop an existing table of that name first (refused otherwise)' },
    batchSize: { default: 1000, help: 'Rows per INSERT statement' },
    pgTimeoutMs: { help: 'Longest wait for PostgreSQL to accept a connection (ms); the load and an index build themselves are not bounded' },
  },
  handler: async (a) => {
    // Before reading data: a bad URL or table name is named by its flag.
    checkPgUrl(a.pgUrl, '--pg-url');
    quoteTable(a.pgTable, '--pg-table');
    const ds = await loadDatastore(a.datastore!);
    const log = a.quiet ? () => {} : (line: string) => process.stderr.write(`rapm pg-load: ${line}\n`);
    log(`${ds.size} rows (d ${ds.d}) from ${a.datastore} into ${a.pgTable}`);
    let last = 0;
    const r = await loadDatastoreIntoPg(ds, {
      url: a.pgUrl!,
      table: a.pgTable,
      replace: a.overwrite,
      batch: a.batchSize,
      index: a.pgIndex,
      timeoutMs: a.pgTimeoutMs,
      onProgress: (rows, total) => {
        if (rows === total || rows - last >= 100_000) {
          last = rows;
          log(`${rows} / ${total} rows`);
        }
      },
    });
    if (a.json) process.stdout.write(`${JSON.stringify(r)}\n`);
    else log(`loaded ${r.rows} rows of vector(${r.d}) into ${r.table} (index ${r.index}) in ${r.seconds.toFixed(1)} s`);
  },
});
