/**
 * Makes `online-retail-sample.csv.gz`, the example pipeline's data: every line item of one
 * customer in twenty of UCI Online Retail (CustomerID mod 20 = 7: 220 customers, 19,292 rows),
 * plus one in a hundred of the rows without a CustomerID (1,356), which the import rejects for
 * having no identity. Values are unchanged.
 *
 *   node --import tsx config/data/make-sample.ts ../shared/datasets/online_retail/online_retail.csv.gz
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { createGunzip, createGzip } from 'node:zlib';

const source = process.argv[2];
if (!source) {
  console.error('usage: make-sample.ts <online_retail.csv.gz>');
  process.exit(2);
}
const out = createGzip({ level: 9 });
out.pipe(createWriteStream(new URL('./online-retail-sample.csv.gz', import.meta.url)));
const lines = createInterface({ input: createReadStream(source).pipe(createGunzip()) });
let index = -1;
for await (const line of lines) {
  index++;
  if (index === 0) {
    out.write(`${line}\n`);
    continue;
  }
  // CustomerID is the 7th column; the fields before it may be quoted and hold commas.
  const customer = /,(\d*(?:\.\d+)?),[^,]*$/.exec(line)?.[1] ?? '';
  const keep = customer ? Math.trunc(Number(customer)) % 20 === 7 : (index - 1) % 100 === 0;
  if (keep) out.write(`${line}\n`);
}
out.end();
