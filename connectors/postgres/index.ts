import { defineSource } from 'audiencehub/sdk';
import { check } from './check.ts';
import { PostgresConfig } from './client.ts';
import { read } from './read.ts';
import { discover } from './streams.ts';

export default defineSource<PostgresConfig>({
  name: 'postgres',
  title: 'PostgreSQL',
  description:
    'Reads tables, views and queries of a PostgreSQL database (an ERP, a warehouse) in pages, incrementally by a cursor column.',
  config: PostgresConfig,
  limits: {
    // Usually an ERP's production database: two streams read at once, each holding one
    // connection and running one query at a time, is a load it carries beside its users.
    concurrency: 2,
  },
  check,
  discover,
  read,
});
