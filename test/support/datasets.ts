import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * A file of the shared public datasets: under AUDIENCEHUB_DATASETS when set, else in the
 * nearest `shared/datasets` beside the repository or one of its parents (the workplace keeps it
 * at ../shared), else /work/shared/datasets. A missing dataset fails the suite that reads it,
 * naming the path it looked for. Loads nothing of the hub, so emulators can use it too.
 *
 * @example
 * const csv = datasetFile('erp/pagila/customer.csv');
 */
export function datasetFile(relative: string): string {
  const { found, candidates } = sharedFile('datasets', relative, 'AUDIENCEHUB_DATASETS');
  return found ?? join(candidates[0]!, relative);
}

/**
 * Look `relative` up in the workplace's shared `folder` (`datasets`, `specs`): under the
 * directory `envVar` names when set, else in the nearest `shared/<folder>` beside the repository
 * or one of its parents, else /work/shared/<folder>. Returns the first that exists, if any, and
 * every place looked at (for the message when none does).
 */
export function sharedFile(
  folder: string,
  relative: string,
  envVar: string,
): { found: string | undefined; candidates: string[] } {
  const candidates: string[] = [];
  const fromEnv = process.env[envVar];
  if (fromEnv) candidates.push(fromEnv);
  let dir = fileURLToPath(new URL('../../', import.meta.url));
  for (;;) {
    candidates.push(join(dir, '..', 'shared', folder));
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  candidates.push(join('/work/shared', folder));
  const found = candidates.map((c) => join(c, relative)).find((path) => existsSync(path));
  return { found, candidates };
}
