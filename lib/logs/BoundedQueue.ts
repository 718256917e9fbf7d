/**
 * FIFO with a fixed capacity that makes room by evicting its oldest items. O(1) push, shift and
 * eviction (a ring buffer), so a flood of pushes against a full queue stays cheap.
 */
export class BoundedQueue<T> {
  private readonly items: Array<T | undefined>;
  private head = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer (got ${capacity})`);
    this.items = new Array<T | undefined>(capacity);
  }

  get length(): number {
    return this.count;
  }

  /** Appends `item`; returns how many old items were evicted to make room (0 or 1). */
  push(item: T): number {
    let evicted = 0;
    if (this.count === this.capacity) {
      this.items[this.head] = undefined;
      this.head = (this.head + 1) % this.capacity;
      this.count--;
      evicted = 1;
    }
    this.items[(this.head + this.count) % this.capacity] = item;
    this.count++;
    return evicted;
  }

  /**
   * Removes and returns up to `max` items from the front; with `sizeOf`, also stops before the
   * items' sizes would add up to more than `maxSize` (the first item is always taken).
   */
  take(max: number, sizeOf?: (item: T) => number, maxSize = Infinity): T[] {
    const n = Math.min(max, this.count);
    const out: T[] = [];
    let size = 0;
    for (let i = 0; i < n; i++) {
      const item = this.items[this.head] as T;
      if (sizeOf && i > 0) {
        size += sizeOf(item);
        if (size > maxSize) break;
      } else if (sizeOf) size = sizeOf(item);
      out.push(item);
      this.items[this.head] = undefined;
      this.head = (this.head + 1) % this.capacity;
    }
    this.count -= out.length;
    return out;
  }

  clear(): number {
    const n = this.count;
    this.take(n);
    return n;
  }
}
