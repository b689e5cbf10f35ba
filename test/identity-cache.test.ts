import { describe, expect, it } from 'vitest';
import { IdentityCache } from '../src/profiles/identity-cache.ts';

const commit = (
  cache: IdentityCache,
  epoch: number,
  checked: boolean,
  learned: Record<string, string> = {},
  losers: string[] = [],
) =>
  cache.committed({
    epoch,
    checked,
    learned: new Map(Object.entries(learned)),
    losers: new Set(losers),
  });

describe('the identity cache and the profile epoch', () => {
  it('trusts nothing until a checked transaction has committed', () => {
    const cache = new IdentityCache();
    expect(cache.trusts(0)).toBe(false);
    commit(cache, 0, true, { 'user_id:a': 'p1' });
    expect(cache.trusts(0)).toBe(true);
    expect(cache.get('user_id:a')).toBe('p1');
  });

  it('trusts an epoch moved only by its own merges, not one moved elsewhere', () => {
    const cache = new IdentityCache();
    commit(cache, 3, true);
    cache.merging(4);
    expect(cache.trusts(4)).toBe(true);
    // 5 was taken by another process's merge or an erasure.
    expect(cache.trusts(5)).toBe(false);
    cache.merging(6);
    expect(cache.trusts(6)).toBe(false);
    commit(cache, 4, false);
    expect(cache.trusts(4)).toBe(true);
    expect(cache.trusts(6)).toBe(false);
  });

  it('vouches for an entry only up to the epoch it was read at, whatever commits meanwhile', () => {
    const cache = new IdentityCache();
    commit(cache, 1, true, { 'user_id:a': 'p1' });
    // A transaction reads the cache...
    const since = cache.goodUpTo;
    expect(cache.get('user_id:a')).toBe('p1');
    // ...another process erases p1 (epoch 2), and another transaction of this process, which
    // read epoch 2 and so checked its own profiles, commits: the cache is cleared and now good
    // up to 2.
    commit(cache, 2, true, { 'user_id:b': 'p2' });
    expect(cache.get('user_id:a')).toBeUndefined();
    expect(cache.trusts(2)).toBe(true);
    // The first transaction reads epoch 2 too: what it read before the erasure is not trusted.
    expect(cache.trusts(2, since)).toBe(false);
  });

  it('remembers its own merges after the epoch has passed them', () => {
    const cache = new IdentityCache();
    commit(cache, 1, true, { 'user_id:a': 'p1' });
    const since = cache.goodUpTo;
    cache.merging(2);
    commit(cache, 2, false, { 'user_id:b': 'p3' }, ['p2']);
    cache.merging(3);
    commit(cache, 3, false);
    // A transaction that read the cache at 1 and the epoch at 3 saw only this process's merges.
    expect(cache.trusts(3, since)).toBe(true);
    expect(cache.trusts(4, since)).toBe(false);
    // Far more epochs than this process took cannot all be its own.
    expect(cache.trusts(1_000_000_000, since)).toBe(false);
  });

  it('keeps only what a transaction checked once the epoch moved elsewhere', () => {
    const cache = new IdentityCache();
    commit(cache, 1, true, { 'user_id:a': 'p1', 'user_id:b': 'p2' });
    commit(cache, 2, true, { 'user_id:c': 'p3' });
    expect(cache.get('user_id:a')).toBeUndefined();
    expect(cache.get('user_id:b')).toBeUndefined();
    expect(cache.get('user_id:c')).toBe('p3');
    expect(cache.size).toBe(1);
    expect(cache.trusts(2)).toBe(true);
  });

  it('keeps what an unchecked transaction learned, and moves past its own merges', () => {
    const cache = new IdentityCache();
    commit(cache, 1, true, { 'user_id:a': 'p1' });
    cache.merging(2);
    commit(cache, 2, false, { 'user_id:b': 'p1' }, ['p2']);
    expect(cache.get('user_id:a')).toBe('p1');
    expect(cache.get('user_id:b')).toBe('p1');
    expect(cache.trusts(2)).toBe(true);
    // 3 is not this process's own: a later merge of its own does not hide it.
    cache.merging(4);
    expect(cache.trusts(4)).toBe(false);
  });

  it('does not keep what a transaction learned from an older epoch', () => {
    const cache = new IdentityCache();
    commit(cache, 5, true, { 'user_id:a': 'p1' });
    commit(cache, 4, false, { 'user_id:old': 'p9' });
    expect(cache.get('user_id:old')).toBeUndefined();
    expect(cache.get('user_id:a')).toBe('p1');
  });

  it('gives no entry that names a profile its own process merged away', () => {
    const cache = new IdentityCache();
    commit(cache, 1, true, { 'user_id:a': 'p1', 'anonymous_id:d': 'p2', 'user_id:b': 'p2' });
    cache.merging(2);
    // The merge learned only the identities its message carried.
    commit(cache, 2, false, { 'anonymous_id:d': 'p1' }, ['p2']);
    expect(cache.get('anonymous_id:d')).toBe('p1');
    expect(cache.get('user_id:b')).toBeUndefined();
    cache.set('user_id:b', 'p1');
    expect(cache.get('user_id:b')).toBe('p1');
  });

  it('forgets its entries when a retry clears it, and keeps the epoch it reached', () => {
    const cache = new IdentityCache();
    commit(cache, 7, true, { 'user_id:a': 'p1' });
    cache.clear();
    expect(cache.size).toBe(0);
    expect(cache.trusts(7)).toBe(true);
  });

  it('finds every key it stored, a lone surrogate or a non-ASCII one included, once', () => {
    const cache = new IdentityCache();
    const keys = ['user_id:a', 'email:zoë@example.com', 'user_id:\ud800x', 'user_id:😀'];
    for (const key of keys) {
      cache.set(key, `p-${key}`);
      cache.set(key, `p-${key}`);
    }
    for (const key of keys) expect(cache.get(key)).toBe(`p-${key}`);
    expect(cache.size).toBe(keys.length);
  });
});
