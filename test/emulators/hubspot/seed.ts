/**
 * Seed data for the HubSpot emulator: owners and contacts with lifecycle stages, original
 * sources and owners spread over them, some of them the customers of the Pagila DVD-rental
 * database (../shared/datasets/erp/pagila/customer.csv: 599 customers with emails) so that a
 * test importing both sources can check that their people merge. Deterministic: the same
 * options give the same account.
 */
import { readFileSync } from 'node:fs';
import { parse } from 'csv-parse/sync';
import { datasetFile } from '../../support/datasets.ts';
import type { ContactView, HubSpotEmulator, OwnerView } from './index.ts';
import { ANALYTICS_SOURCES, LIFECYCLE_STAGES, type ContactInput } from './store.ts';

export interface PagilaCustomer {
  customerId: number;
  firstName: string;
  lastName: string;
  /** As Pagila writes it, upper case (`MARY.SMITH@sakilacustomer.org`). */
  email: string;
}

export const PAGILA_CUSTOMERS_CSV = datasetFile('erp/pagila/customer.csv');

/** Pagila's customers in id order. */
export function pagilaCustomers(file = PAGILA_CUSTOMERS_CSV): PagilaCustomer[] {
  const rows = parse(readFileSync(file, 'utf8'), { columns: true }) as Record<string, string>[];
  return rows
    .map((row) => ({
      customerId: Number(row.customer_id),
      firstName: row.first_name!,
      lastName: row.last_name!,
      email: row.email!,
    }))
    .sort((a, b) => a.customerId - b.customerId);
}

export interface SeedOptions {
  /** Contacts to create. */
  contacts: number;
  /**
   * How many of them are Pagila customers (the first ones, in customer id order): same email,
   * lower-cased as HubSpot keeps it, and the name in title case. At most 599.
   */
  fromPagila?: number;
  /** Active owners (3 by default) and deactivated ones (1), contacts spread over all. */
  owners?: number;
  archivedOwners?: number;
  /** Contacts per `lastmodifieddate`: runs of this many share one timestamp (1: none do). */
  perTimestamp?: number;
  /** The first contacts' date (epoch ms); by default far enough back for all to be past. */
  since?: number;
  /** Milliseconds between two timestamps (1000). */
  stepMs?: number;
  /** Varies the spread of stages, sources and owners. */
  seed?: number;
}

const FIRST = ['Ana', 'Ben', 'Chloé', 'Dmitri', 'Eva', 'Farid', 'Grace', 'Hiro', 'Ines', 'Jon'];
const LAST = ['Silva', 'Okafor', 'Novak', 'Berg', 'Rossi', 'Haddad', 'Kim', 'Moreau', 'Tan'];

/** mulberry32: a small seeded generator, so seeds give the same account every time. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const titleCase = (s: string) =>
  s
    .toLowerCase()
    .replace(/(^|[\s'-])(\p{L})/gu, (_, sep: string, c: string) => sep + c.toUpperCase());

/**
 * Fills the emulator's account; returns what was created, contacts in creation order.
 *
 * @example
 * const { contacts } = seedAccount(hubspot, { contacts: 450, fromPagila: 100, perTimestamp: 3 });
 */
export function seedAccount(
  emulator: HubSpotEmulator,
  options: SeedOptions,
): { owners: OwnerView[]; contacts: ContactView[] } {
  const next = random(options.seed ?? 7);
  const pick = <T>(items: readonly T[]) => items[Math.floor(next() * items.length)]!;
  const owners: OwnerView[] = [];
  for (let i = 0; i < (options.owners ?? 3); i++) {
    owners.push(
      emulator.addOwner({
        email: `owner${i + 1}@example.com`,
        firstName: pick(FIRST),
        lastName: pick(LAST),
      }),
    );
  }
  for (let i = 0; i < (options.archivedOwners ?? 1); i++) {
    owners.push(
      emulator.addOwner({
        email: `former${i + 1}@example.com`,
        firstName: pick(FIRST),
        lastName: pick(LAST),
        archived: true,
      }),
    );
  }

  const fromPagila = options.fromPagila ?? 0;
  const customers = fromPagila > 0 ? pagilaCustomers().slice(0, fromPagila) : [];
  if (customers.length < fromPagila) {
    throw new Error(`Pagila has ${customers.length} customers; ${fromPagila} were asked for`);
  }
  const perTimestamp = Math.max(1, options.perTimestamp ?? 1);
  const stepMs = options.stepMs ?? 1000;
  const since =
    options.since ?? Date.now() - (Math.ceil(options.contacts / perTimestamp) + 60) * stepMs;

  const contacts: ContactView[] = [];
  for (let i = 0; i < options.contacts; i++) {
    const customer = customers[i];
    const input: ContactInput = customer
      ? {
          email: customer.email,
          firstname: titleCase(customer.firstName),
          lastname: titleCase(customer.lastName),
        }
      : {
          email: `contact${i + 1}@example.com`,
          firstname: pick(FIRST),
          lastname: pick(LAST),
        };
    if (next() < 0.6) input.phone = `+1 555 01${String(i % 100).padStart(2, '0')}`;
    if (next() < 0.9) input.lifecyclestage = pick(LIFECYCLE_STAGES)[0];
    if (next() < 0.8) input.hs_analytics_source = pick(ANALYTICS_SOURCES)[0];
    if (owners.length > 0 && next() < 0.85) input.hubspot_owner_id = pick(owners).id;
    const at = since + Math.floor(i / perTimestamp) * stepMs;
    contacts.push(emulator.createContact(input, { at }));
  }
  return { owners, contacts };
}
