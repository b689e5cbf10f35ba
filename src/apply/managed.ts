/**
 * Objects `audiencehub apply` manages carry their config key; the API refuses to change or
 * delete them, so the config folder stays the one place they are defined.
 */
import { HubError } from '../errors.ts';

/** Passed by `apply` itself, the one writer allowed to change a managed object. */
export interface ManagedWrite {
  managed?: boolean;
}

/**
 * Refuse a change to an object config manages, unless `apply` is making it.
 *
 * @example
 * refuseManaged('segment', row.managed_by, options); // 409 managed-by-config
 */
export function refuseManaged(
  kind: 'segment' | 'destination' | 'sync' | 'source',
  managedBy: string | null | undefined,
  options: ManagedWrite = {},
): void {
  if (!managedBy || options.managed) return;
  throw new HubError(
    409,
    'managed-by-config',
    'Managed by config as code',
    `This ${kind} is managed by config as code (key "${managedBy}"): change it in the config folder and run \`audiencehub apply\`.`,
    undefined,
    { managedBy },
  );
}
