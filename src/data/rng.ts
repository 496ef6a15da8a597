// The seeded RNG lives in src/rng.ts (a base module every layer uses); this re-export keeps
// imports of the old path working.
export { Rng } from '../rng.js';
