import { createApp } from '../../src/api/app.ts';
import { Role, createApiToken } from '../../src/auth/credentials.ts';
import { testConfig } from '../../src/config.ts';
import type { Database, Db } from '../../src/db/index.ts';
import { createLogger } from '../../src/log.ts';
import { testDatabase } from '../support/db.ts';

export interface Answer {
  status: number;
  headers: Headers;
  /** Parsed JSON for JSON answers, the text otherwise. */
  body: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- tests read any shape
  text: string;
}

export interface CallOptions {
  /** An API token; admin's by default, null for none. */
  token?: string | null;
  /** An object is sent as JSON, a string as it is. */
  body?: unknown;
  headers?: Record<string, string>;
}

/** An app over a fresh database, with one token per role and the log lines it wrote. */
export interface Harness {
  database: Database;
  db: Db;
  app: ReturnType<typeof createApp>;
  tokens: Record<Role, string>;
  logs: string[];
  call(method: string, path: string, options?: CallOptions): Promise<Answer>;
  close(): Promise<void>;
}

export async function harness(): Promise<Harness> {
  const database = await testDatabase();
  const logs: string[] = [];
  const log = createLogger('debug', {}, (line) => logs.push(line));
  const app = createApp({ db: database.db, config: testConfig(), log });
  const tokens = {} as Record<Role, string>;
  for (const role of Role.options) {
    tokens[role] = (await createApiToken(database.db, { name: `${role} token`, role })).token;
  }
  const call = caller(app, tokens.admin);
  return { database, db: database.db, app, tokens, logs, call, close: () => database.close() };
}

/**
 * Requests to `app` in process, as `defaultToken` unless a call names another token (or `null`
 * for none); JSON bodies are parsed.
 */
export function caller(
  app: { request(path: string, init: RequestInit): Response | Promise<Response> },
  defaultToken: string,
) {
  return async (method: string, path: string, options: CallOptions = {}): Promise<Answer> => {
    const token = options.token === undefined ? defaultToken : options.token;
    const headers: Record<string, string> = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    if (options.body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await app.request(path, {
      method,
      headers: { ...headers, ...options.headers },
      body:
        options.body === undefined
          ? undefined
          : typeof options.body === 'string'
            ? options.body
            : JSON.stringify(options.body),
    });
    const text = await res.text();
    const isJson = /json/.test(res.headers.get('Content-Type') ?? '');
    return {
      status: res.status,
      headers: res.headers,
      text,
      body: isJson ? JSON.parse(text) : text,
    };
  };
}

/** Follow `nextCursor` through every page of a list. */
export async function allPages<T = { id: string }>(h: Harness, path: string, token?: string) {
  const pages: T[][] = [];
  let cursor: string | null = null;
  do {
    const sep = path.includes('?') ? '&' : '?';
    const url: string = cursor ? `${path}${sep}cursor=${encodeURIComponent(cursor)}` : path;
    const answer = await h.call('GET', url, { token });
    if (answer.status !== 200) throw new Error(`${url}: ${answer.status} ${answer.text}`);
    pages.push(answer.body.data);
    cursor = answer.body.nextCursor;
  } while (cursor && pages.length < 100);
  return pages;
}
