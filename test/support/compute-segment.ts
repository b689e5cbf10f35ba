/**
 * A separate process computing one segment, for tests that kill a worker mid-run:
 *   node --import tsx test/support/compute-segment.ts <postgres-url> <segment-id>
 */
import { openPostgres } from '../../src/db/drivers/postgres.ts';
import { computeSegment } from '../../src/segments/compute.ts';

async function main() {
  const [url, segmentId] = process.argv.slice(2);
  const database = openPostgres(url!, { max: 2 });
  try {
    await computeSegment(database.db, segmentId!, 'manual');
  } finally {
    await database.close();
  }
}

await main();
