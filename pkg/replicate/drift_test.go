package replicate

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/gobucardo/gobucardo/pkg/pgtest"
)

func TestCompare(t *testing.T) {
	rel := Relation{Schema: "public", Name: "t", KeyColumns: []string{"id"}}
	lenient := rel
	lenient.Lenient = true
	base := func(cols ...ColumnShape) TableShape {
		return TableShape{Exists: true, PrimaryKey: true, Keys: [][]string{{"id"}},
			Columns: append([]ColumnShape{{Name: "id", Type: "integer", NotNull: true}}, cols...)}
	}
	col := func(name, typ string) ColumnShape { return ColumnShape{Name: name, Type: typ} }
	src := func(s TableShape) DBShape { return DBShape{DB: "A", Role: RoleSource, Shape: s} }
	tgt := func(s TableShape) DBShape { return DBShape{DB: "B", Role: RoleTarget, Shape: s} }
	type want struct {
		kind, db, column, repair, repairOn string
		breaks                             bool
	}
	cases := []struct {
		name   string
		rel    Relation
		shapes []DBShape
		want   []want
	}{
		{"same", rel, []DBShape{src(base(col("v", "text"))), tgt(base(col("v", "text")))}, nil},
		{"column order does not matter", rel, []DBShape{src(base(col("v", "text"), col("w", "date"))),
			tgt(base(col("w", "date"), col("v", "text")))}, nil},
		{"missing on the target, strict", rel, []DBShape{src(base(col("v", "text"))), tgt(base())},
			[]want{{DiffMissingColumn, "B", "v", `ALTER TABLE "public"."t" ADD COLUMN "v" text`, "B", true}}},
		{"missing on the target, strict_checking=false", lenient, []DBShape{src(base(col("v", "text"))), tgt(base())},
			[]want{{DiffMissingColumn, "B", "v", `ALTER TABLE "public"."t" ADD COLUMN "v" text`, "B", false}}},
		{"extra nullable on the target", rel, []DBShape{src(base()), tgt(base(col("x", "integer")))},
			[]want{{DiffExtraColumn, "B", "x", `ALTER TABLE "public"."t" ADD COLUMN "x" integer`, "A", false}}},
		{"extra NOT NULL with a default on the target", rel, []DBShape{src(base()),
			tgt(base(ColumnShape{Name: "x", Type: "integer", NotNull: true, Default: true}))},
			[]want{{DiffExtraColumn, "B", "x", `ALTER TABLE "public"."t" ADD COLUMN "x" integer`, "A", false}}},
		{"extra NOT NULL without a default on the target", rel, []DBShape{src(base()),
			tgt(base(ColumnShape{Name: "x", Type: "integer", NotNull: true}))},
			[]want{{DiffExtraColumn, "B", "x", `ALTER TABLE "public"."t" ALTER COLUMN "x" DROP NOT NULL`, "B", true}}},
		{"compatible type: integer into bigint", rel, []DBShape{src(base(col("n", "integer"))), tgt(base(col("n", "bigint")))},
			[]want{{DiffType, "B", "n", `ALTER TABLE "public"."t" ALTER COLUMN "n" TYPE integer`, "B", false}}},
		{"compatible type: varchar(10) into text", rel, []DBShape{src(base(col("n", "character varying(10)"))), tgt(base(col("n", "text")))},
			[]want{{DiffType, "B", "n", `ALTER TABLE "public"."t" ALTER COLUMN "n" TYPE character varying(10)`, "B", false}}},
		{"narrower on the target: bigint into integer", rel, []DBShape{src(base(col("n", "bigint"))), tgt(base(col("n", "integer")))},
			[]want{{DiffType, "B", "n", `ALTER TABLE "public"."t" ALTER COLUMN "n" TYPE bigint`, "B", true}}},
		{"incompatible type: text into integer", rel, []DBShape{src(base(col("n", "text"))), tgt(base(col("n", "integer")))},
			[]want{{DiffType, "B", "n", `ALTER TABLE "public"."t" ALTER COLUMN "n" TYPE text USING "n"::text`, "B", true}}},
		{"widening between two sources fails one way", rel, []DBShape{src(base(col("n", "integer"))),
			{DB: "C", Role: RoleSource, Shape: base(col("n", "bigint"))}},
			[]want{{DiffType, "C", "n", `ALTER TABLE "public"."t" ALTER COLUMN "n" TYPE bigint`, "A", true}}},
		{"generated on the target only", rel, []DBShape{src(base(col("g", "integer"))),
			tgt(base(ColumnShape{Name: "g", Type: "integer", Generated: true}))},
			[]want{{DiffGenerated, "B", "g", `ALTER TABLE "public"."t" ALTER COLUMN "g" DROP EXPRESSION`, "B", true}}},
		{"generated on the source is not copied", rel, []DBShape{src(base(ColumnShape{Name: "g", Type: "integer", Generated: true})), tgt(base())}, nil},
		{"table missing on the target", rel, []DBShape{src(base(col("v", "text"))), tgt(TableShape{})},
			[]want{{DiffMissingTable, "B", "", `CREATE TABLE "public"."t" ("id" integer NOT NULL, "v" text, PRIMARY KEY ("id"))`, "B", true}}},
		{"table missing on the only source", rel, []DBShape{src(TableShape{}), tgt(base())},
			[]want{{DiffMissingTable, "A", "", `CREATE TABLE "public"."t" ("id" integer NOT NULL, PRIMARY KEY ("id"))`, "A", true}}},
		{"the first source lacks it: the second is the reference", rel, []DBShape{src(TableShape{}),
			{DB: "C", Role: RoleSource, Shape: base()}, tgt(base())},
			[]want{{DiffMissingTable, "A", "", `CREATE TABLE "public"."t" ("id" integer NOT NULL, PRIMARY KEY ("id"))`, "A", true}}},
		{"key gone on the source", rel, []DBShape{src(TableShape{Exists: true, Columns: base().Columns}), tgt(base())},
			[]want{{DiffKey, "A", "", `ALTER TABLE "public"."t" ADD PRIMARY KEY ("id")`, "A", true}}},
		{"key changed on the source", rel, []DBShape{src(TableShape{Exists: true, PrimaryKey: true, Keys: [][]string{{"v"}},
			Columns: base(col("v", "text")).Columns}), tgt(base(col("v", "text")))},
			[]want{{DiffKey, "A", "", `ALTER TABLE "public"."t" ALTER COLUMN "id" SET NOT NULL, ADD UNIQUE ("id")`, "A", true}}},
		{"no key on a target", rel, []DBShape{src(base()), tgt(TableShape{Exists: true, Columns: base().Columns})},
			[]want{{DiffKey, "B", "", `ALTER TABLE "public"."t" ADD PRIMARY KEY ("id")`, "B", false}}},
		{"no key on a second source", rel, []DBShape{src(base()), {DB: "C", Role: RoleSource, Shape: TableShape{Exists: true, Columns: base().Columns}}},
			[]want{{DiffKey, "C", "", `ALTER TABLE "public"."t" ADD PRIMARY KEY ("id")`, "C", true}}},
		{"a unique key in another order is the key", Relation{Schema: "public", Name: "t", KeyColumns: []string{"a", "b"}},
			[]DBShape{src(TableShape{Exists: true, Keys: [][]string{{"b", "a"}}}), tgt(TableShape{Exists: true, Keys: [][]string{{"a", "b"}}})}, nil},
		{"quoted names", Relation{Schema: "My Schema", Name: "T", KeyColumns: []string{"id"}},
			[]DBShape{src(base(col("Odd \"col\"", "text"))), tgt(base())},
			[]want{{DiffMissingColumn, "B", "Odd \"col\"", `ALTER TABLE "My Schema"."T" ADD COLUMN "Odd ""col""" text`, "B", true}}},
		{"sequence missing", Relation{Schema: "public", Name: "s", Sequence: true},
			[]DBShape{src(TableShape{Exists: true}), tgt(TableShape{})},
			[]want{{DiffMissingTable, "B", "", `CREATE SEQUENCE "public"."s"`, "B", true}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Compare(c.rel, c.shapes)
			var g []want
			for _, d := range got {
				g = append(g, want{d.Kind, d.DB, d.Column, d.Repair, d.RepairOn, d.Breaks})
				if s := d.String(); strings.Contains(s, "\n") || !strings.HasPrefix(s, "db "+d.DB+": ") {
					t.Errorf("sentence %q", s)
				}
			}
			if !slices.Equal(g, c.want) {
				t.Errorf("Compare =\n %+v\nwant\n %+v", g, c.want)
			}
		})
	}
}

func TestDifferenceSentence(t *testing.T) {
	d := Difference{Kind: DiffMissingColumn, Table: "public.t", DB: "B", From: "A", Column: "v", Breaks: true, Tolerable: true,
		Repair: `ALTER TABLE "public"."t" ADD COLUMN "v" text`, RepairOn: "B", Why: "is missing (it is text on A), so runs fail"}
	want := `db B: column v of public.t is missing (it is text on A), so runs fail: run ALTER TABLE "public"."t" ADD COLUMN "v" text on B, ` +
		`or mcp update sync s strict_checking=false to leave it out of the copy`
	if got := d.Explain("s"); got != want {
		t.Errorf("Explain =\n%s\nwant\n%s", got, want)
	}
}

// TestReadShape reads each kind of difference from real tables, and every
// repair statement Compare gives makes the shapes the same.
func TestReadShape(t *testing.T) {
	c := pgtest.Shared(t)
	ctx := context.Background()
	a, b := c.NewDB(t), c.NewDB(t)
	c.Exec(t, a, `CREATE TABLE t (id integer PRIMARY KEY, v text, n integer, w varchar(10), g integer GENERATED ALWAYS AS (n * 2) STORED)`)
	c.Exec(t, b, `CREATE TABLE t (id integer NOT NULL, n text, w text, x integer NOT NULL, g integer GENERATED ALWAYS AS (id) STORED)`)
	rel := Relation{Schema: "public", Name: "t", KeyColumns: []string{"id"}}
	read := func() []Difference {
		var shapes []DBShape
		for _, db := range []struct{ name, role, dsn string }{{"A", RoleSource, a}, {"B", RoleTarget, b}} {
			conn := c.Connect(t, db.dsn)
			sh, err := ReadShape(ctx, conn, rel)
			if err != nil {
				t.Fatal(err)
			}
			shapes = append(shapes, DBShape{DB: db.name, Role: db.role, Shape: sh})
		}
		return Compare(rel, shapes)
	}
	got := map[string]bool{}
	diffs := read()
	for _, d := range diffs {
		got[d.Kind+" "+d.Column] = d.Breaks
	}
	want := map[string]bool{DiffMissingColumn + " v": true, DiffType + " n": true, DiffType + " w": false,
		DiffExtraColumn + " x": true, DiffKey + " ": false}
	if len(got) != len(want) {
		t.Fatalf("differences %v, want %v", diffs, want)
	}
	for k, v := range want {
		if b, ok := got[k]; !ok || b != v {
			t.Errorf("difference %q: breaks=%v (found %v), want breaks=%v", k, b, ok, v)
		}
	}
	for _, d := range diffs {
		dsn := map[string]string{"A": a, "B": b}[d.RepairOn]
		c.Exec(t, dsn, d.Repair)
	}
	for _, d := range read() {
		if d.Breaks {
			t.Errorf("after the repairs: %s", d)
		}
	}
}

// TestColumnSetBetween: which columns a copy from one db gives each dest
// when strict_checking=false left some out.
func TestColumnSetBetween(t *testing.T) {
	full := &columnSet{names: []string{"k", "a", "b"}, all: []string{"k", "a", "b"}}
	lenient := &columnSet{all: []string{"k", "a", "b"}, missing: map[string]map[string]bool{"B": {"a": true}, "T": {"b": true}}}
	lenient = lenient.without("A", "B") // the sources' common columns
	nodes := func(names ...string) []*node {
		var out []*node
		for _, n := range names {
			out = append(out, &node{DB: DB{Name: n}})
		}
		return out
	}
	cases := []struct {
		name  string
		set   *columnSet
		from  string
		dests []*node
		want  string
	}{
		{"strict: one group, every column", full, "A", nodes("B", "T", "U"), "B,T,U:k,a,b"},
		{"from the source that has all", lenient, "A", nodes("B", "T", "U"), "B:k,b T:k,a U:k,a,b"},
		{"from a source that lacks a", lenient, "B", nodes("A", "T", "U"), "A,U:k,b T:k"},
		{"dests alike share a group", lenient, "A", nodes("U", "V"), "U,V:k,a,b"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var parts []string
			for _, g := range c.set.between(c.from, c.dests) {
				var ds []string
				for _, d := range g.dests {
					ds = append(ds, d.Name)
				}
				parts = append(parts, strings.Join(ds, ",")+":"+strings.Join(g.cols.names, ","))
			}
			if got := strings.Join(parts, " "); got != c.want {
				t.Errorf("between = %q, want %q", got, c.want)
			}
		})
	}
	if got := strings.Join(lenient.names, ","); got != "k,b" {
		t.Errorf("columns every source has = %q, want k,b", got)
	}
}
