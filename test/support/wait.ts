/**
 * Read `read` until `done` holds or `ms` have passed, polling every `everyMs`, and answer the
 * last value read: the test then asserts on it, so a timeout fails showing what was last seen
 * rather than "timed out".
 *
 * @example
 * const run = await until(() => getImportRun(db, id), (r) => r?.status !== 'running');
 * expect(run).toMatchObject({ status: 'succeeded' });
 */
export async function until<T>(
  read: () => Promise<T>,
  done: (value: T) => boolean,
  ms = 15_000,
  everyMs = 25,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
