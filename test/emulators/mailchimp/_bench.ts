import { MailchimpStore, mailchimpTime } from './store.ts';
import { handle } from './routes.ts';
const store = new MailchimpStore({ unknownMergeFields: 'ignore' });
const list = store.createList({});
const B = 200;
const bodies = Array.from({ length: B }, (_, b) =>
  JSON.stringify({
    members: Array.from({ length: 500 }, (_, i) => ({
      email_address: `user${b * 500 + i}@example.com`,
      status: 'subscribed',
      merge_fields: { FNAME: 'First' + i, LNAME: 'Last' },
    })),
    update_existing: true,
  }),
);
function run(label: string) {
  const phases = { parse: 0, handle: 0, stringify: 0 };
  const cpu0 = process.cpuUsage();
  for (const text of bodies) {
    let t = performance.now();
    const body = JSON.parse(text);
    phases.parse += performance.now() - t;
    t = performance.now();
    const res = handle(store, {
      method: 'POST',
      segments: ['lists', list.id],
      query: new URLSearchParams(),
      body,
      baseUrl: 'http://x/3.0',
      now: mailchimpTime(),
    });
    phases.handle += performance.now() - t;
    t = performance.now();
    JSON.stringify(res.body);
    phases.stringify += performance.now() - t;
  }
  const cpu = process.cpuUsage(cpu0);
  console.log(
    label,
    Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, +(v / B).toFixed(3)])),
    'cpu ms/batch',
    ((cpu.user + cpu.system) / 1000 / B).toFixed(3),
  );
}
run('create');
run('update');
run('update');
run('update');
for (let k = 0; k < 5; k++) run('update');
