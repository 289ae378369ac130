package catalog

import (
	"context"
	"fmt"
	"testing"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

// TestMissingRelations: a table must be a table or a partitioned table, a
// sequence a sequence.
func TestMissingRelations(t *testing.T) {
	c := pgtest.Shared(t)
	db := c.NewDB(t)
	c.Exec(t, db, `CREATE TABLE public.t (id int PRIMARY KEY);
		CREATE TABLE public.p (id int, at date) PARTITION BY RANGE (at);
		CREATE SEQUENCE public.seq;
		CREATE VIEW public.v AS SELECT 1 AS id;
		CREATE SCHEMA "My Schema"; CREATE TABLE "My Schema"."My Table" (id int PRIMARY KEY);`)
	conn := c.Connect(t, db)
	rel := func(kind, schema, name string) Relation { return Relation{Kind: kind, Schema: schema, Name: name} }
	present := []Relation{rel(KindTable, "public", "t"), rel(KindTable, "public", "p"), rel(KindSequence, "public", "seq"),
		rel(KindTable, "My Schema", "My Table")}
	absent := []Relation{rel(KindTable, "public", "v"), rel(KindTable, "public", "seq"), rel(KindSequence, "public", "t"),
		rel(KindTable, "public", "nosuch"), rel(KindTable, "other", "t"), rel(KindTable, "my schema", "my table")}
	got, err := MissingRelations(context.Background(), conn, append(present, absent...))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(absent) {
		t.Errorf("MissingRelations =\n %v\nwant\n %v", got, absent)
	}
	if got, err := MissingRelations(context.Background(), conn, nil); err != nil || got != nil {
		t.Errorf("MissingRelations(nil) = %v, %v", got, err)
	}
}
