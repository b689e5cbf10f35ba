/** The comment every patched line carries; its presence marks postgres.js as patched. */
export const MARKER: string;
/** The comment on the lines that pipeline a transaction's BEGIN. */
export const PIPELINED: string;
/** Patch postgres.js in place (idempotent); what was done to each file. */
export function patchPostgres(root?: string): string[];
