/**
 * Partial responses: the `fields` query parameter every Google API takes
 * (https://developers.google.com/workspace/sheets/api/guides/field-masks), e.g.
 * `sheets.properties(sheetId,title),spreadsheetId` or `sheets/properties/title`. Fields that do
 * not exist select nothing (Google answers 400 for some; the emulator does not check names).
 */
import { invalid } from './errors.ts';

/** A selection: each key keeps its whole value (`true`) or a sub-selection. */
export type Selection = Map<string, Selection | true>;

/**
 * @example parseFields('sheets(properties(title)),spreadsheetId')
 */
export function parseFields(text: string): Selection {
  let i = 0;
  const fail = (): never => {
    throw invalid(`Invalid field selection ${text}`);
  };
  const name = (): string => {
    const m = /^[A-Za-z0-9_@*]+/.exec(text.slice(i));
    if (!m) fail();
    i += m![0].length;
    return m![0];
  };
  const merge = (into: Selection, key: string, sub: Selection | true): void => {
    const have = into.get(key);
    if (have === true || sub === true) into.set(key, true);
    else if (have) for (const [k, v] of sub) merge(have, k, v);
    else into.set(key, sub);
  };
  const list = (): Selection => {
    const sel: Selection = new Map();
    for (;;) {
      const path = [name()];
      while (text[i] === '.' || text[i] === '/') {
        i++;
        path.push(name());
      }
      let leaf: Selection | true = true;
      if (text[i] === '(') {
        i++;
        leaf = list();
        if (text[i] !== ')') fail();
        i++;
      }
      let sub: Selection | true = leaf;
      for (let k = path.length - 1; k > 0; k--) sub = new Map([[path[k]!, sub]]);
      merge(sel, path[0]!, sub);
      if (text[i] !== ',') return sel;
      i++;
    }
  };
  const sel = list();
  if (i !== text.length) fail();
  return sel;
}

/** Keeps only the selected fields of a response body. */
export function applyFields(value: unknown, sel: Selection): unknown {
  if (Array.isArray(value)) return value.map((v) => applyFields(v, sel));
  if (value === null || typeof value !== 'object') return value;
  if (sel.has('*')) return value;
  const out: Record<string, unknown> = {};
  for (const [key, sub] of sel) {
    const v = (value as Record<string, unknown>)[key];
    if (v === undefined) continue;
    out[key] = sub === true ? v : applyFields(v, sub);
  }
  return out;
}
