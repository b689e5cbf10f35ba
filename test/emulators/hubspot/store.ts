/**
 * What one HubSpot account holds for the emulator: contacts (CRM object type `0-1`), owners and
 * the contact property definitions the emulator knows, with HubSpot's rules for them:
 * - every property value is a string (or absent); `hs_object_id` is the record id, `createdate`
 *   and `lastmodifieddate` are ISO 8601 datetimes kept by HubSpot, never written by a client;
 * - any write to a contact moves its `lastmodifieddate` (and `updatedAt`) to the time of the
 *   write (https://knowledge.hubspot.com/properties/hubspots-default-contact-properties);
 * - a deleted contact is archived: off searches and default listings, kept for `archived=true`;
 * - a deactivated user's owner is archived and listed only with `archived=true`.
 */

/** The contact properties the emulator defines; anything else is refused by the helpers. */
export type ContactProperty =
  | 'email'
  | 'firstname'
  | 'lastname'
  | 'phone'
  | 'company'
  | 'lifecyclestage'
  | 'hs_analytics_source'
  | 'hubspot_owner_id'
  | 'createdate'
  | 'lastmodifieddate'
  | 'hs_object_id';

export type PropertyType = 'string' | 'number' | 'datetime' | 'enumeration';

export interface PropertyOption {
  label: string;
  value: string;
  displayOrder: number;
  hidden: boolean;
  description: string;
}

export interface PropertyDefinition {
  name: ContactProperty;
  label: string;
  type: PropertyType;
  fieldType: string;
  groupName: string;
  options: PropertyOption[];
  /** Kept by HubSpot: clients cannot write it. */
  readOnlyValue: boolean;
}

export interface StoredContact {
  id: string;
  properties: Partial<Record<ContactProperty, string>>;
  createdAt: number;
  updatedAt: number;
  archived: boolean;
  archivedAt?: number;
}

export interface StoredOwner {
  id: string;
  email: string;
  firstName: string;
  lastName: string;
  userId: number;
  createdAt: number;
  updatedAt: number;
  archived: boolean;
}

const option = (value: string, label: string, displayOrder: number): PropertyOption => ({
  label,
  value,
  displayOrder,
  hidden: false,
  description: '',
});

/** HubSpot's default lifecycle stages, in pipeline order (internal value, label). */
export const LIFECYCLE_STAGES: [string, string][] = [
  ['subscriber', 'Subscriber'],
  ['lead', 'Lead'],
  ['marketingqualifiedlead', 'Marketing Qualified Lead'],
  ['salesqualifiedlead', 'Sales Qualified Lead'],
  ['opportunity', 'Opportunity'],
  ['customer', 'Customer'],
  ['evangelist', 'Evangelist'],
  ['other', 'Other'],
];

/** The values of "Original Source" (`hs_analytics_source`) and their labels. */
export const ANALYTICS_SOURCES: [string, string][] = [
  ['ORGANIC_SEARCH', 'Organic Search'],
  ['PAID_SEARCH', 'Paid Search'],
  ['EMAIL_MARKETING', 'Email Marketing'],
  ['SOCIAL_MEDIA', 'Organic Social'],
  ['REFERRALS', 'Referrals'],
  ['OTHER_CAMPAIGNS', 'Other Campaigns'],
  ['DIRECT_TRAFFIC', 'Direct Traffic'],
  ['OFFLINE', 'Offline Sources'],
  ['PAID_SOCIAL', 'Paid Social'],
];

function definitions(): Map<ContactProperty, PropertyDefinition> {
  const text = (name: ContactProperty, label: string): PropertyDefinition => ({
    name,
    label,
    type: 'string',
    fieldType: 'text',
    groupName: 'contactinformation',
    options: [],
    readOnlyValue: false,
  });
  const list: PropertyDefinition[] = [
    text('email', 'Email'),
    text('firstname', 'First Name'),
    text('lastname', 'Last Name'),
    { ...text('phone', 'Phone Number'), fieldType: 'phonenumber' },
    text('company', 'Company Name'),
    {
      ...text('lifecyclestage', 'Lifecycle Stage'),
      type: 'enumeration',
      fieldType: 'radio',
      options: LIFECYCLE_STAGES.map(([value, label], i) => option(value, label, i)),
    },
    {
      ...text('hs_analytics_source', 'Original Source'),
      type: 'enumeration',
      fieldType: 'select',
      groupName: 'analyticsinformation',
      options: ANALYTICS_SOURCES.map(([value, label], i) => option(value, label, i)),
      readOnlyValue: true,
    },
    // Owners are its options in HubSpot; the emulator keeps them in the owners list only.
    {
      ...text('hubspot_owner_id', 'Contact owner'),
      type: 'enumeration',
      fieldType: 'select',
    },
    { ...text('createdate', 'Create Date'), type: 'datetime', fieldType: 'date' },
    {
      ...text('lastmodifieddate', 'Last Modified Date'),
      type: 'datetime',
      fieldType: 'date',
      readOnlyValue: true,
    },
    {
      ...text('hs_object_id', 'Record ID'),
      type: 'number',
      fieldType: 'number',
      readOnlyValue: true,
    },
  ];
  return new Map(list.map((d) => [d.name, d]));
}

/** The properties a contact listing or search returns when none are asked for. */
export const DEFAULT_PROPERTIES: ContactProperty[] = [
  'createdate',
  'email',
  'firstname',
  'hs_object_id',
  'lastmodifieddate',
  'lastname',
];

/** Returned on every record whatever was asked for. */
export const ALWAYS_RETURNED: ContactProperty[] = [
  'createdate',
  'hs_object_id',
  'lastmodifieddate',
];

/** Writable with a value: what tests and seeds give a contact. */
export type ContactInput = Partial<
  Record<
    Exclude<ContactProperty, 'createdate' | 'lastmodifieddate' | 'hs_object_id'>,
    string | null
  >
>;

export const iso = (ms: number) => new Date(ms).toISOString();

export class HubSpotStore {
  readonly properties = definitions();
  readonly contacts = new Map<string, StoredContact>();
  readonly owners = new Map<string, StoredOwner>();
  private nextContactId = 101;
  private nextOwnerId = 20_000_001;
  private nextUserId = 5_000_001;

  /** Creates a contact at `at` (epoch ms): its create and last-modified dates. */
  createContact(input: ContactInput, at: number): StoredContact {
    const id = String(this.nextContactId++);
    const contact: StoredContact = {
      id,
      properties: {},
      createdAt: at,
      updatedAt: at,
      archived: false,
    };
    this.assign(contact, input);
    contact.properties.hs_object_id = id;
    contact.properties.createdate = iso(at);
    contact.properties.lastmodifieddate = iso(at);
    this.contacts.set(id, contact);
    return contact;
  }

  /** Writes properties (null clears one) and moves the last-modified date to `at`. */
  updateContact(id: string, input: ContactInput, at: number): StoredContact {
    const contact = this.liveContact(id);
    this.assign(contact, input);
    this.touch(contact, at);
    return contact;
  }

  /** A write that changes no value still moves the last-modified date, as any HubSpot write. */
  touch(contact: StoredContact, at: number): void {
    // A clock moving backwards must not move a contact back in time.
    const when = Math.max(at, contact.updatedAt);
    contact.updatedAt = when;
    contact.properties.lastmodifieddate = iso(when);
  }

  archiveContact(id: string, at: number): void {
    const contact = this.liveContact(id);
    contact.archived = true;
    contact.archivedAt = at;
  }

  liveContact(id: string): StoredContact {
    const contact = this.contacts.get(id);
    if (!contact || contact.archived) throw new Error(`no contact ${id} in the emulator`);
    return contact;
  }

  addOwner(
    input: { email: string; firstName?: string; lastName?: string; archived?: boolean },
    at: number,
  ): StoredOwner {
    const owner: StoredOwner = {
      id: String(this.nextOwnerId++),
      email: input.email,
      firstName: input.firstName ?? '',
      lastName: input.lastName ?? '',
      userId: this.nextUserId++,
      createdAt: at,
      updatedAt: at,
      archived: input.archived ?? false,
    };
    this.owners.set(owner.id, owner);
    return owner;
  }

  /** Adds an option to an enumeration property (a custom lifecycle stage, say). */
  addOption(name: ContactProperty, value: string, label: string): void {
    const definition = this.properties.get(name);
    if (!definition || definition.type !== 'enumeration') {
      throw new Error(`${name} is not an enumeration property`);
    }
    definition.options.push(option(value, label, definition.options.length));
  }

  private assign(contact: StoredContact, input: ContactInput): void {
    for (const [name, value] of Object.entries(input)) {
      const definition = this.properties.get(name as ContactProperty);
      if (!definition) throw new Error(`the emulator has no contact property ${name}`);
      if (['createdate', 'lastmodifieddate', 'hs_object_id'].includes(name)) {
        throw new Error(`${name} is kept by HubSpot`);
      }
      const key = name as ContactProperty;
      if (value === null || value === undefined || value === '') delete contact.properties[key];
      // HubSpot keeps email addresses lower-cased.
      else contact.properties[key] = key === 'email' ? value.trim().toLowerCase() : value;
    }
  }
}
