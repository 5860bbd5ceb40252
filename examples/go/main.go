// pgx over vectorgate: a table with a vector column, rows in, nearest neighbours out.
// Vectors travel in pgvector's text form ('[1,2,3]'), so pgx alone is enough.
//
//	DATABASE_URL=postgresql://localhost:5433/vectorgate go run ./examples/go
package main

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/jackc/pgx/v5"
)

func main() {
	ctx := context.Background()
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		url = "postgresql://localhost:5433/vectorgate"
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(ctx)

	for _, sql := range []string{
		"CREATE EXTENSION IF NOT EXISTS vector",
		"DROP TABLE IF EXISTS go_docs",
		"CREATE TABLE go_docs (id bigint PRIMARY KEY, title text, lang text, embedding vector(3))",
		"CREATE INDEX ON go_docs USING hnsw (embedding vector_cosine_ops)",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			log.Fatalf("%s: %v", sql, err)
		}
	}
	docs := []struct {
		id             int64
		title, lang, v string
	}{
		{1, "Getting started", "en", "[1,0,0]"},
		{2, "Erste Schritte", "de", "[0.9,0.1,0]"},
		{3, "Deploying", "en", "[0,1,0]"},
		{4, "Tuning the index", "en", "[0.7,0.7,0]"},
	}
	batch := &pgx.Batch{}
	for _, d := range docs {
		batch.Queue("INSERT INTO go_docs VALUES ($1, $2, $3, $4::vector)", d.id, d.title, d.lang, d.v)
	}
	if err := conn.SendBatch(ctx, batch).Close(); err != nil {
		log.Fatal(err)
	}

	// Cosine neighbours of [1,0.2,0] among the English documents.
	rows, err := conn.Query(ctx,
		`SELECT id, title, embedding <=> $1::vector AS distance FROM go_docs
		 WHERE lang = $2 ORDER BY embedding <=> $1::vector LIMIT 2`, "[1,0.2,0]", "en")
	if err != nil {
		log.Fatal(err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		var title string
		var distance float64
		if err := rows.Scan(&id, &title, &distance); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%d %-18s %.3f\n", id, title, distance)
		ids = append(ids, id)
	}
	if rows.Err() != nil {
		log.Fatal(rows.Err())
	}
	if fmt.Sprint(ids) != "[1 4]" {
		log.Fatalf("unexpected neighbours: %v", ids)
	}
}
