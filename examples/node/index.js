// pgvector for Node over vectorgate, as pgvector's README shows it for node-postgres:
// nothing but the connection string is vectorgate's.
//
//   npm install pg pgvector
//   DATABASE_URL=postgresql://localhost:5433/vectorgate node examples/node/index.js
const pg = require('pg');
const pgvector = require('pgvector/pg');

async function main() {
  const client = new pg.Client({
    connectionString: process.env.DATABASE_URL || 'postgresql://localhost:5433/vectorgate',
  });
  await client.connect();
  await client.query('CREATE EXTENSION IF NOT EXISTS vector');
  await pgvector.registerTypes(client);

  await client.query('DROP TABLE IF EXISTS node_items');
  await client.query(
    'CREATE TABLE node_items (id bigserial PRIMARY KEY, category text, embedding vector(3))');
  await client.query('CREATE INDEX ON node_items USING hnsw (embedding vector_l2_ops)');
  const items = [['fruit', [1, 1, 1]], ['fruit', [2, 2, 2]], ['veg', [1, 1, 2]], ['veg', [9, 9, 9]]];
  for (const [category, embedding] of items) {
    await client.query('INSERT INTO node_items (category, embedding) VALUES ($1, $2)',
      [category, pgvector.toSql(embedding)]);
  }

  // The nearest neighbours of [1,1,1] by L2 distance, with a filter pushed down.
  const { rows } = await client.query(
    'SELECT id, category, embedding, embedding <-> $1 AS distance FROM node_items ' +
      'WHERE category = $2 ORDER BY embedding <-> $1 LIMIT 5',
    [pgvector.toSql([1, 1, 1]), 'veg']);
  for (const r of rows) console.log(r.id, r.category, r.embedding, r.distance.toFixed(3));
  if (JSON.stringify(rows.map((r) => r.embedding)) !== '[[1,1,2],[9,9,9]]') {
    throw new Error(`unexpected neighbours: ${JSON.stringify(rows)}`);
  }
  await client.end();
}

main().catch((e) => { console.error(e); process.exit(1); });
