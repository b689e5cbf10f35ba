import { MailchimpStore, mailchimpTime } from './store.ts';
import { handle } from './routes.ts';
const store = new MailchimpStore({ unknownMergeFields: 'ignore' });
const list = store.createList({});
const N = 100000;
for (let b = 0; b < N / 500; b++) {
  list.batchSubscribe(
    {
      members: Array.from({ length: 500 }, (_, i) => ({
        email_address: `user${b * 500 + i}@example.com`,
        status: 'subscribed',
      })),
    },
    { skipMergeValidation: false, skipDuplicateCheck: false },
    mailchimpTime(),
  );
}
const bodies = Array.from({ length: N / 500 }, (_, b) =>
  JSON.stringify({
    members_to_add: Array.from({ length: 500 }, (_, i) => `user${b * 500 + i}@example.com`),
  }),
);
const removeBodies = Array.from({ length: N / 500 }, (_, b) =>
  JSON.stringify({
    members_to_remove: Array.from({ length: 500 }, (_, i) => `user${b * 500 + i}@example.com`),
  }),
);
for (let round = 0; round < 4; round++) {
  const seg = list.createSegment({ name: 'S' + round, type: 'static' }, mailchimpTime());
  for (const set of [bodies, removeBodies]) {
    let h = 0,
      s = 0;
    const cpu0 = process.cpuUsage();
    for (const text of set) {
      const body = JSON.parse(text);
      let t = performance.now();
      const res = handle(store, {
        method: 'POST',
        segments: ['lists', list.id, 'segments', String(seg.id)],
        query: new URLSearchParams(),
        body,
        baseUrl: 'http://x/3.0',
        now: mailchimpTime(),
      });
      h += performance.now() - t;
      t = performance.now();
      JSON.stringify(res.body);
      s += performance.now() - t;
    }
    const cpu = process.cpuUsage(cpu0);
    console.log(
      set === bodies ? 'add' : 'remove',
      (h / set.length).toFixed(3),
      (s / set.length).toFixed(3),
      'cpu',
      ((cpu.user + cpu.system) / 1000 / set.length).toFixed(3),
    );
  }
}
