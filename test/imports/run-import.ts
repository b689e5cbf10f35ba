/**
 * A separate process importing one stream, for tests that kill an import mid-run:
 *   node --import tsx test/imports/run-import.ts <postgres-url> <source-id> <stream> <key> <batch>
 * `key` is the secret key (base64) the test's hub uses.
 */
import { testConfig } from '../../src/config.ts';
import { secretBox } from '../../src/destinations/secrets.ts';
import { openPostgres } from '../../src/db/drivers/postgres.ts';
import { runImport } from '../../src/imports/run.ts';
import { silentLogger } from '../../src/log.ts';
import { createConnectorRegistry } from '../../src/sync/registry.ts';
import { countingSource } from './support.ts';

async function main() {
  const [url, sourceId, stream, key, batch] = process.argv.slice(2);
  const database = openPostgres(url!, { max: 2 });
  const connectors = createConnectorRegistry();
  connectors.register(countingSource);
  try {
    await runImport(
      database.db,
      {
        connectors,
        box: secretBox(Buffer.from(key!, 'base64')),
        log: silentLogger,
        uploadsDir: '/nonexistent',
      },
      testConfig(),
      sourceId!,
      stream!,
      'manual',
      { batchSize: Number(batch) },
    );
  } finally {
    await database.close();
  }
}

await main();
