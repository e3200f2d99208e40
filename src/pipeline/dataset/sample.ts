// Bottom-k sampling: keep the k items with the smallest priority. With priorities from a
// seeded hash of each item's identity, the kept set is the same whatever order items arrive
// in, and memory stays at k items however many stream past.

export class BottomK<T> {
  private readonly heap: { p: number; t: number; item: T }[] = [];
  seen = 0;

  constructor(readonly k: number) {}

  /** Offers an item; `tie` orders items of equal priority. */
  offer(priority: number, tie: number, item: T): void {
    this.seen++;
    if (this.k <= 0) return;
    const h = this.heap;
    if (h.length < this.k) {
      h.push({ p: priority, t: tie, item });
      this.up(h.length - 1);
      return;
    }
    if (!less(priority, tie, h[0].p, h[0].t)) return;
    h[0] = { p: priority, t: tie, item };
    this.down(0);
  }

  /** Whether an item of this priority would be kept now (so a caller can skip preparing it). */
  accepts(priority: number, tie: number): boolean {
    if (this.k <= 0) return false;
    return this.heap.length < this.k || less(priority, tie, this.heap[0].p, this.heap[0].t);
  }

  get size(): number {
    return this.heap.length;
  }

  /** The kept items, smallest priority first. */
  items(): T[] {
    return [...this.heap].sort((a, b) => (less(a.p, a.t, b.p, b.t) ? -1 : 1)).map((e) => e.item);
  }

  // A max-heap: the root is the largest kept priority, the first to go.
  private up(i: number): void {
    const h = this.heap;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!less(h[parent].p, h[parent].t, h[i].p, h[i].t)) break;
      [h[parent], h[i]] = [h[i], h[parent]];
      i = parent;
    }
  }

  private down(i: number): void {
    const h = this.heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && less(h[m].p, h[m].t, h[l].p, h[l].t)) m = l;
      if (r < h.length && less(h[m].p, h[m].t, h[r].p, h[r].t)) m = r;
      if (m === i) return;
      [h[m], h[i]] = [h[i], h[m]];
      i = m;
    }
  }
}

function less(p1: number, t1: number, p2: number, t2: number): boolean {
  return p1 < p2 || (p1 === p2 && t1 < t2);
}
