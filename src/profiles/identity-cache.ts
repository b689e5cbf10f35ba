/**
 * Which profile holds an identity, remembered in process so that known people resolve without
 * a query. An identity moves to another profile only when its profile is merged (and becomes a
 * tombstone) or is erased, and ingestion always checks, under lock, that the profiles it used
 * are still live: a stale entry therefore makes the transaction retry, and a retry clears the
 * cache. Only mappings from committed transactions are added.
 */
export class IdentityCache {
  private readonly map = new Map<string, string>();

  constructor(private readonly capacity = 200_000) {}

  get(key: string): string | undefined {
    return this.map.get(key);
  }

  set(key: string, profileId: string): void {
    if (this.map.size >= this.capacity && !this.map.has(key)) {
      // Oldest first: Map iterates in insertion order.
      const oldest = this.map.keys().next().value;
      if (oldest !== undefined) this.map.delete(oldest);
    }
    this.map.set(key, profileId);
  }

  clear(): void {
    this.map.clear();
  }

  get size(): number {
    return this.map.size;
  }
}
