// Child of pack-swap.test.ts: one pack with --overwrite (argv: input, out), run with the test
// hook RAPM_TEST_PAUSE_IN_SWAP set, so it stops between the swap's two renames to be killed there.
import { packDral } from '../../src/data/pack.js';

const [input, out] = process.argv.slice(2);
await packDral([input!], out!, { chunkSize: 25, overwrite: true });
process.stdout.write('finished\n');
