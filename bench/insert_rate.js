// Bulk INSERT throughput of one vectorgate: 100-row statements of 384-d vectors, built
// before the clock starts, sent by node-postgres one after another.
// Usage: node bench/insert_rate.js PORT ROWS [ext]   (ext: the extended protocol)
// The table options come from $OPTS (e.g. "WITH (indexing_threshold_kb = 10000000)" keeps
// the index's HNSW build out of the measured CPU). Needs node-postgres (scripts/client-tests.sh
// installs it under ~/.cache/vectorgate/clients/node).
const { Client } = require(process.env.HOME + '/.cache/vectorgate/clients/node/node_modules/pg');
(async () => {
  const c = new Client({ host: '127.0.0.1', port: +process.argv[2], user: 'bench', database: 'vectorgate' });
  await c.connect();
  await c.query('DROP TABLE IF EXISTS ins');
  await c.query('CREATE TABLE ins (id bigint PRIMARY KEY, cat int, title text, embedding vector(384)) ' + (process.env.OPTS || ''));
  let seed = 7;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
  const vecs = [];
  for (let i = 0; i < 200; i++) {
    const v = [];
    for (let j = 0; j < 384; j++) v.push(random().toFixed(6));
    vecs.push('[' + v.join(',') + ']');
  }
  const n = +process.argv[3];
  const statements = [];
  for (let s = 0; s < n; s += 100) {
    const rows = [];
    for (let i = s; i < s + 100; i++) rows.push(`(${i}, ${i % 10}, 'doc ${i}', '${vecs[i % 200]}')`);
    statements.push('INSERT INTO ins (id, cat, title, embedding) VALUES ' + rows.join(','));
  }
  const started = Date.now();
  for (const q of statements) await (process.argv[4] === 'ext' ? c.query({ text: q, values: [] }) : c.query(q));
  console.log(`${(n / ((Date.now() - started) / 1000)).toFixed(0)} rows/s`);
  await c.end();
})();
