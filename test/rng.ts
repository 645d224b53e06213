/** the property tests' draws: seededRandom (mulberry32), with the helpers they use on it */
import { seededRandom } from '../src/kernel/world.ts';

export function rng(seed: number) {
  const next = seededRandom(seed);
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  return { next, int, pick, chance: (p: number) => next() < p };
}

export type Rng = ReturnType<typeof rng>;
