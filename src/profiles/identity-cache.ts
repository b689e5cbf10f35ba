/**
 * Which profile holds an identity, remembered in process so that known people resolve without
 * a query. An identity moves to another profile only when its profile is merged (and becomes a
 * tombstone) or is erased. Only mappings from committed transactions are added.
 *
 * Whether an entry may be stale is told by the profile epoch, a sequence that every merge and
 * every erasure moves on, in any process (src/db/schema.ts). The cache keeps the epoch up to
 * which its entries are known good, and the epochs its own process's merges took, whose losers
 * it drops itself. An ingest transaction notes that epoch when it reads the cache, and later
 * reads the profile epoch under the ingest horizon. Between the two:
 * - moved only by this process's merges (or not at all), nothing the cache gave it was merged
 *   or erased elsewhere, and the profiles it gave are used unchecked;
 * - moved by anything else, the transaction checks that those profiles are still live, which
 *   makes it retry on a stale entry (a retry clears the cache), and once committed the cache
 *   keeps only what that transaction checked.
 * The epoch noted at the read matters: another transaction of this process may commit in
 * between, having checked its own profiles, and move the cache's epoch past an erasure that the
 * entries read before it knew nothing of.
 * A merge that commits after the epoch was read is the race every batch has with a concurrent
 * merge: the events land on the tombstone and the fold moves them to the survivor.
 */
const SURROGATE = /[\ud800-\udfff]/;

/**
 * A copy of `key` in one piece. A key joined from its type and value is a tree of strings that
 * holds both parts, several times the size of its text; the cache keeps up to `capacity`. (A
 * key with a surrogate, which might be a lone one that UTF-8 cannot carry, is kept as it is.)
 */
const compact = (key: string) =>
  SURROGATE.test(key) ? key : Buffer.from(key, 'utf8').toString('utf8');

/** How far behind the epoch this process's own merges' epochs are still remembered. */
const OWN_EPOCHS_KEPT = 10_000;

export class IdentityCache {
  private readonly map = new Map<string, string>();
  /** The epoch up to which no entry names a profile merged or erased elsewhere; -1: none yet. */
  private epoch = -1;
  /** Epochs taken by this process's merges, the recent ones (see `OWN_EPOCHS_KEPT`). */
  private readonly own = new Set<number>();
  /** Profiles this process merged away: an entry naming one is stale. */
  private readonly merged = new Set<string>();

  constructor(private readonly capacity = 200_000) {}

  get(key: string): string | undefined {
    const profile = this.map.get(key);
    return profile !== undefined && this.merged.size > 0 && this.merged.has(profile)
      ? undefined
      : profile;
  }

  set(key: string, profileId: string): void {
    if (this.map.has(key)) {
      this.map.set(key, profileId);
      return;
    }
    if (this.map.size >= this.capacity) {
      // Oldest first: Map iterates in insertion order.
      const oldest = this.map.keys().next().value;
      if (oldest !== undefined) this.map.delete(oldest);
    }
    this.map.set(compact(key), profileId);
  }

  /**
   * The epoch up to which the entries are known good now. A transaction takes it when it reads
   * the cache, and hands it to {@link trusts}: the entries it read are vouched for up to then,
   * whatever another transaction's commit does to the cache meanwhile.
   */
  get goodUpTo(): number {
    return this.epoch;
  }

  /**
   * Whether a transaction that read `epoch` (under the ingest horizon) may use the profiles the
   * cache gave it without checking them: nothing but this process's merges moved the epoch
   * since `since`, when its entries were known good ({@link goodUpTo} as it read them).
   */
  trusts(epoch: number, since = this.epoch): boolean {
    if (since < 0) return false;
    // More epochs than this process ever took: some were taken elsewhere.
    if (epoch - since > this.own.size) return false;
    for (let e = since + 1; e <= epoch; e++) if (!this.own.has(e)) return false;
    return true;
  }

  /** A merge of this process took `epoch` (before it commits). */
  merging(epoch: number): void {
    if (epoch > this.epoch - OWN_EPOCHS_KEPT) this.own.add(epoch);
  }

  /**
   * A transaction committed: it read `epoch`, checked its profiles or not (`checked`), learned
   * `learned` and merged `losers` away.
   */
  committed({
    epoch,
    checked,
    learned,
    losers,
  }: {
    epoch: number;
    checked: boolean;
    learned: Map<string, string>;
    losers: Set<string>;
  }): void {
    if (epoch > this.epoch) {
      // Checked because something else moved the epoch: any other entry may be stale.
      if (checked) this.clear();
      this.epoch = epoch;
      // Own epochs stay known a while: a transaction still running may have read its entries
      // before this one moved `epoch` past them.
      for (const e of this.own) if (e <= epoch - OWN_EPOCHS_KEPT) this.own.delete(e);
    }
    if (this.merged.size + losers.size > this.capacity / 10) this.clear();
    for (const id of losers) this.merged.add(id);
    // A transaction that read an older epoch saw an older state: what it learned may be stale.
    if (epoch < this.epoch) return;
    for (const [key, profile] of learned) this.set(key, profile);
  }

  /** Forget every entry (the epoch reached stays: an empty cache names nothing stale). */
  clear(): void {
    this.map.clear();
    this.merged.clear();
  }

  get size(): number {
    return this.map.size;
  }
}
