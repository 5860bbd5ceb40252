// pgx v5 (its statement cache and binary formats) and database/sql through pgx's stdlib
// driver against a running vectorgate (VECTORGATE_URL); searches are checked against an
// exact ranking computed here.
package main

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"os"
	"reflect"
	"sort"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib"
)

func check(name string, got, want any) {
	if !reflect.DeepEqual(got, want) {
		fmt.Printf("FAIL %s: got %v, want %v\n", name, got, want)
		os.Exit(1)
	}
	fmt.Printf("ok   %s\n", name)
}

func vecText(v []float32) string {
	s := "["
	for i, x := range v {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprint(x)
	}
	return s + "]"
}

func main() {
	ctx := context.Background()
	url := os.Getenv("VECTORGATE_URL")
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		fmt.Println("FAIL connect:", err)
		os.Exit(1)
	}
	defer conn.Close(ctx)
	must := func(what string, err error) {
		if err != nil {
			fmt.Printf("FAIL %s: %v\n", what, err)
			os.Exit(1)
		}
	}
	_, err = conn.Exec(ctx, "DROP TABLE IF EXISTS go_items")
	must("drop", err)
	_, err = conn.Exec(ctx, "CREATE TABLE go_items (id bigint PRIMARY KEY, name text, score double precision, embedding vector(3)) WITH (distance = 'l2')")
	must("create", err)
	vecs := map[int64][]float32{}
	for i := int64(0); i < 30; i++ {
		v := []float32{float32(math.Sin(float64(i))), float32(math.Cos(float64(i) * 1.3)), float32(i%5) / 5}
		vecs[i] = v
		// pgx's default: the extended protocol, binary where it can, a statement cache.
		_, err = conn.Exec(ctx, "INSERT INTO go_items VALUES ($1, $2, $3, $4)", i, fmt.Sprintf("n%d", i), float64(i)/2, vecText(v))
		must("insert", err)
	}
	var n int64
	must("count", conn.QueryRow(ctx, "SELECT count(*) FROM go_items").Scan(&n))
	check("pgx: inserts", n, int64(30))
	q := []float32{0.2, 0.5, 0.4}
	ids := make([]int64, 0, len(vecs))
	for id := range vecs {
		ids = append(ids, id)
	}
	dist := func(id int64) float64 {
		s := 0.0
		for i := range q {
			d := float64(vecs[id][i] - q[i])
			s += d * d
		}
		return s
	}
	sort.Slice(ids, func(a, b int) bool { return dist(ids[a]) < dist(ids[b]) })
	for round := 0; round < 3; round++ {
		rows, err := conn.Query(ctx, "SELECT id, name, score FROM vector_search('go_items', $1, 5) ORDER BY distance", vecText(q))
		must("search", err)
		var got []int64
		for rows.Next() {
			var id int64
			var name string
			var score float64
			must("scan", rows.Scan(&id, &name, &score))
			check("pgx: binary result columns", fmt.Sprintf("%s/%g", name, score), fmt.Sprintf("n%d/%g", id, float64(id)/2))
			got = append(got, id)
		}
		must("rows", rows.Err())
		check(fmt.Sprintf("pgx: cached statement, round %d", round), got, ids[:5])
	}
	_, err = conn.Exec(ctx, "SELECT * FROM no_such_table")
	check("pgx: an error", err != nil, true)
	must("after an error", conn.QueryRow(ctx, "SELECT count(*) FROM go_items WHERE score > $1", 10.0).Scan(&n))
	check("pgx: the connection survives", n, int64(9))

	db, err := sql.Open("pgx", url)
	must("database/sql open", err)
	defer db.Close()
	var name string
	must("database/sql query", db.QueryRow("SELECT name FROM go_items WHERE id = $1", 7).Scan(&name))
	check("database/sql: parameters", name, "n7")
	fmt.Println("go clients: all checks passed")
}
