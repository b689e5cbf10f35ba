/** Structured JSON-lines logging. Callers pass redacted data only: never secrets or raw errors. */
export type Level = 'debug' | 'info' | 'warn' | 'error';

const order: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, data?: Record<string, unknown>): void;
  info(msg: string, data?: Record<string, unknown>): void;
  warn(msg: string, data?: Record<string, unknown>): void;
  error(msg: string, data?: Record<string, unknown>): void;
  child(bindings: Record<string, unknown>): Logger;
}

export function createLogger(
  level: Level = (process.env.LOG_LEVEL as Level | undefined) ?? 'info',
  bindings: Record<string, unknown> = {},
  write: (line: string) => void = (line) => process.stderr.write(line + '\n'),
): Logger {
  const min = order[level] ?? order.info;
  const emit = (lvl: Level, msg: string, data?: Record<string, unknown>) => {
    if (order[lvl] < min) return;
    write(
      JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...bindings, ...data }),
    );
  };
  return {
    debug: (m, d) => emit('debug', m, d),
    info: (m, d) => emit('info', m, d),
    warn: (m, d) => emit('warn', m, d),
    error: (m, d) => emit('error', m, d),
    child: (more) => createLogger(level, { ...bindings, ...more }, write),
  };
}

/** A logger that drops everything (tests). */
export const silentLogger: Logger = createLogger('error', {}, () => {});
