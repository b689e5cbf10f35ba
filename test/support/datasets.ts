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
  const candidates: string[] = [];
  if (process.env.AUDIENCEHUB_DATASETS) candidates.push(process.env.AUDIENCEHUB_DATASETS);
  let dir = fileURLToPath(new URL('../../', import.meta.url));
  for (;;) {
    candidates.push(join(dir, '..', 'shared', 'datasets'));
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  candidates.push('/work/shared/datasets');
  const found = candidates.map((c) => join(c, relative)).find((path) => existsSync(path));
  return found ?? join(candidates[0]!, relative);
}
