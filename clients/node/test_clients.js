// node-postgres (pg) and pgvector for Node against a running vectorgate (VECTORGATE_URL):
// parameters in the simple and the prepared path, pgvector's type registration, and
// searches checked against an exact ranking computed here.
const pg = require('pg');
const pgvector = require('pgvector/pg');

function check(name, got, want) {
  const g = JSON.stringify(got), w = JSON.stringify(want);
  if (g !== w) {
    console.log(`FAIL ${name}: got ${g}, want ${w}`);
    process.exit(1);
  }
  console.log(`ok   ${name}`);
}

function rand(seed) {
  let s = seed;
  return () => { s = (s * 1103515245 + 12345) % 2147483648; return s / 2147483648 - 0.5; };
}

async function main() {
  const client = new pg.Client({ connectionString: process.env.VECTORGATE_URL });
  await client.connect();
  await pgvector.registerTypes(client);
  const r = rand(11);
  const vecs = {};
  for (let i = 0; i < 30; i++) vecs[i] = [r(), r(), r()];
  const l2 = (a, b) => Math.sqrt(a.reduce((s, x, i) => s + (x - b[i]) ** 2, 0));
  const nearest = (q, k, ids) =>
    (ids || Object.keys(vecs).map(Number)).sort((a, b) => l2(vecs[a], q) - l2(vecs[b], q)).slice(0, k);

  await client.query('DROP TABLE IF EXISTS js_items');
  await client.query("CREATE TABLE js_items (id bigint PRIMARY KEY, tag text, embedding vector(3)) WITH (distance = 'l2')");
  for (const [id, v] of Object.entries(vecs)) {
    await client.query('INSERT INTO js_items (id, tag, embedding) VALUES ($1, $2, $3)', [Number(id), `t${id % 3}`, pgvector.toSql(v)]);
  }
  const n = await client.query('SELECT count(*) AS n FROM js_items');
  check('pg: inserts with parameters', Number(n.rows[0].n), 30);
  const q = [r(), r(), r()];
  const res = await client.query({
    name: 'nearest',
    text: 'SELECT id, embedding FROM js_items ORDER BY embedding <-> $1 LIMIT 5',
    values: [pgvector.toSql(q)],
  });
  check('pg: prepared pgvector ORDER BY', res.rows.map((x) => Number(x.id)), nearest(q, 5));
  check('pg: vectors come back as arrays', res.rows.every((x) => Array.isArray(x.embedding) && x.embedding.length === 3), true);
  const again = await client.query({ name: 'nearest', text: 'SELECT id, embedding FROM js_items ORDER BY embedding <-> $1 LIMIT 5', values: [pgvector.toSql(q)] });
  check('pg: the named statement runs again', again.rows.map((x) => Number(x.id)), nearest(q, 5));
  const filtered = await client.query(
    "SELECT id FROM vector_search('js_items', $1, 4) WHERE tag = $2 ORDER BY distance",
    [pgvector.toSql(q), 't1'],
  );
  check('pg: filtered vector_search', filtered.rows.map((x) => Number(x.id)),
    nearest(q, 4, Object.keys(vecs).map(Number).filter((i) => i % 3 === 1)));
  try {
    await client.query('SELECT * FROM no_such_table');
    check('pg: error', 'no error', '42P01');
  } catch (e) {
    check('pg: errors carry SQLSTATE', e.code, '42P01');
  }
  const one = await client.query('SELECT 1 AS one');
  check('pg: the connection survives an error', Number(one.rows[0].one), 1);
  await client.end();
  console.log('node clients: all checks passed');
}

main().catch((e) => { console.log('FAIL', e); process.exit(1); });
