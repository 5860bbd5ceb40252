\set VERBOSITY verbose
CREATE TABLE docs (id bigint PRIMARY KEY, title text, category text, year int, tags text[], embedding vector(3)) WITH (distance = 'cosine');
INSERT INTO docs VALUES
  (1, 'intro', 'ml', 2024, '{ml,intro}', '[1, 0, 0]'),
  (2, 'dbs',   'db', 2023, '{db}',       '[0.9, 0.1, 0]'),
  (3, 'nets',  'ml', 2021, '{ml}',       '[0.8, 0.2, 0.1]');
SELECT id, title, distance FROM vector_search('docs', '[1, 0, 0]', 10)
WHERE category = 'ml' AND year >= 2020 ORDER BY distance;
\dt
\d docs
\d+ docs
SELECT * FROM missing;
SELECT * FROM vector_search('docs', '[1, 0]', 5);
SELECT count(*) FROM docs;
-- psql's other catalog commands answer (empty lists where the proxy has no such objects)
\l
\dn
\df
\do
\du
\db
\dx
\dT
\dp
\z docs
\dd
\dL
-- expanded display and timing
\x on
SELECT id, title FROM docs WHERE id = 1;
\x off
\timing on
SELECT 1, 2;
\timing off
SELECT current_user = user AS same_user, pg_typeof(id) FROM docs WHERE id = 1;
-- constraints as \d shows them (checked against PostgreSQL 15's psql output)
CREATE TABLE parent (id int PRIMARY KEY, email text UNIQUE, n int CHECK (n > 0));
CREATE TABLE child (id int PRIMARY KEY, pid int REFERENCES parent ON DELETE CASCADE, pe text, note text, CONSTRAINT cpe FOREIGN KEY (pe) REFERENCES parent (email) ON DELETE SET NULL, CHECK (length(note) < 10));
\d parent
\d child
-- a schema of its own, as \dn, \dt and \d show it
CREATE SCHEMA app;
CREATE TABLE app.items (id serial PRIMARY KEY, name text UNIQUE, e vector(2));
\dn
\dt app.*
\d app.items
-- a table without a primary key: its hidden key shows nowhere
CREATE TABLE nokey (a int, note text);
INSERT INTO nokey VALUES (1, 'first'), (1, 'first');
SELECT * FROM nokey;
\d nokey
