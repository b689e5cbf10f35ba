/**
 * `audiencehub apply <folder>` and the apply `start` makes of the config folder.
 */
import type { HubContext } from '../context.ts';
import { applyConfig, describePlan, planConfig } from './apply.ts';
import { loadConfigDir } from './load.ts';

export interface ApplyOptions {
  /** Show the plan and stop. */
  planOnly?: boolean;
  env?: NodeJS.ProcessEnv;
}

/**
 * Plan, print the plan, and apply it unless only the plan was asked for. Problems with the
 * files throw a ConfigFileError listing each, before anything is written.
 *
 * @example
 * await applyFolder(ctx, 'config', { planOnly: true }, (line) => console.log(line));
 */
export async function applyFolder(
  ctx: HubContext,
  path: string,
  options: ApplyOptions,
  print: (text: string) => void,
): Promise<{ changes: number }> {
  const loaded = loadConfigDir(path, options.env ?? process.env);
  const shown =
    loaded.files.length === 1 ? loaded.files[0] : `${loaded.files.length} files in ${path}`;
  if (options.planOnly) {
    const plan = await planConfig(ctx, loaded);
    print(`Plan for ${shown}:\n${describePlan(plan)}\n`);
    return { changes: plan.changes.length };
  }
  const result = await applyConfig(ctx, loaded);
  print(
    result.changes.length === 0
      ? `${describePlan(result)}\n`
      : `Applied ${shown}:\n${describePlan(result)}\n`,
  );
  return { changes: result.changes.length };
}
