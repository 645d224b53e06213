/**
 * A binary min-heap kept in a plain array (so that what holds it stays plain data: the World's
 * timers), ordered by `before`. The World's timer queue and the stack's send queue use it.
 */

/** adds `x` to the heap `h` */
export function heapPush<T>(h: T[], x: T, before: (a: T, b: T) => boolean): void {
  h.push(x);
  for (let i = h.length - 1; i > 0;) {
    const p = (i - 1) >> 1;
    if (!before(h[i], h[p])) break;
    [h[i], h[p]] = [h[p], h[i]];
    i = p;
  }
}

/** removes and returns the heap's first element (`h` must not be empty) */
export function heapPop<T>(h: T[], before: (a: T, b: T) => boolean): T {
  const top = h[0];
  const last = h.pop()!;
  if (h.length) {
    h[0] = last;
    for (let i = 0; ;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && before(h[l], h[m])) m = l;
      if (r < h.length && before(h[r], h[m])) m = r;
      if (m === i) break;
      [h[i], h[m]] = [h[m], h[i]];
      i = m;
    }
  }
  return top;
}
