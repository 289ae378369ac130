package replicate

import (
	"fmt"
	"strings"
	"testing"
)

// keyTypes are tested as primary keys, one table each, with a value and a
// NULL in the other columns.
var keyTypes = []struct{ typ, a, b string }{
	{"smallint", "1", "-32768"},
	{"integer", "1", "2147483647"},
	{"bigint", "1", "-9223372036854775808"},
	{"numeric(20,5)", "1.5", "-99999.00001"},
	{"text", "'a b'", "'ü \" '' \\ tab\there'"},
	{"varchar(10)", "'x'", "''"},
	{"bytea", `'\x00ff'`, `'\x'`},
	{"boolean", "true", "false"},
	{"date", "'2024-02-29'", "'infinity'"},
	{"timestamp", "'2024-01-01 12:00:00.123456'", "'-infinity'"},
	{"timestamptz", "'2024-01-01 12:00:00+05'", "'1999-12-31 23:59:59.999999+00'"},
	{"uuid", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'00000000-0000-0000-0000-000000000000'"},
	{"jsonb", `'{"a": [1, 2]}'`, `'"s"'`},
	{"int[]", "'{1,2,3}'", "'{}'"},
	{"mood", "'happy'", "'sad'"},
	{"posint", "1", "42"},
	{"mood[]", "'{sad,happy}'", "'{}'"},
}

const typesPrelude = `
CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
`

func TestTypesAsKeysAndColumns(t *testing.T) {
	var schema strings.Builder
	schema.WriteString(typesPrelude)
	var rels []Relation
	for i, kt := range keyTypes {
		name := fmt.Sprintf("k%02d", i)
		fmt.Fprintf(&schema, "CREATE TABLE public.%s (k %s PRIMARY KEY, v %s, j json, n numeric, a text[], g numeric GENERATED ALWAYS AS (n * 2) STORED);\n", name, kt.typ, kt.typ)
		rels = append(rels, Relation{Schema: "public", Name: name, KeyColumns: []string{"k"}})
	}
	// Composite key of mixed types, mixed-case names with spaces and non-ASCII, in two schemas.
	schema.WriteString(`CREATE SCHEMA "Sché ma";
		CREATE TABLE "Sché ma"."Tåble Ünïcode" ("Id Col" int, "Ké" text, d date, "Vàl" jsonb, PRIMARY KEY ("Ké", "Id Col", d));
		CREATE TABLE public."Tåble Ünïcode" (id int PRIMARY KEY, x text);`)
	rels = append(rels,
		Relation{Schema: "Sché ma", Name: "Tåble Ünïcode", KeyColumns: []string{"Ké", "Id Col", "d"}},
		Relation{Schema: "public", Name: "Tåble Ünïcode", KeyColumns: []string{"id"}})
	e := newEnv(t, schema.String(), []string{"A:source", "B:target", "F:fullcopy"}, rels)
	// B: same tables with the columns in reverse order, and enum labels created in another order (other OIDs).
	var bSchema strings.Builder
	bSchema.WriteString("DROP SCHEMA public CASCADE; CREATE SCHEMA public; DROP SCHEMA \"Sché ma\" CASCADE;\n")
	bSchema.WriteString("CREATE TYPE dummy AS ENUM ('x'); CREATE TYPE mood AS ENUM ('sad', 'happy'); CREATE DOMAIN posint AS integer CHECK (VALUE > 0);\n")
	for i, kt := range keyTypes {
		fmt.Fprintf(&bSchema, "CREATE TABLE public.k%02d (g numeric GENERATED ALWAYS AS (n * 2) STORED, a text[], n numeric, j json, v %s, k %s PRIMARY KEY);\n", i, kt.typ, kt.typ)
	}
	bSchema.WriteString(`CREATE SCHEMA "Sché ma";
		CREATE TABLE "Sché ma"."Tåble Ünïcode" ("Vàl" jsonb, d date, "Ké" text, "Id Col" int, PRIMARY KEY ("Ké", "Id Col", d));
		CREATE TABLE public."Tåble Ünïcode" (x text, id int PRIMARY KEY);`)
	e.exec("B", bSchema.String())
	for i, kt := range keyTypes {
		e.exec("A", fmt.Sprintf(`INSERT INTO public.k%02d (k, v, j, n, a) VALUES (%s, %s, '{"x": 1}', 1.25, '{"a b", NULL, "c,d"}'), (%s, NULL, NULL, NULL, NULL)`,
			i, kt.a, kt.a, kt.b))
	}
	e.exec("A", `INSERT INTO "Sché ma"."Tåble Ünïcode" VALUES (1, 'ä', '2020-01-01', '{"k": "v"}'), (1, 'b', '2020-01-01', NULL);
		INSERT INTO public."Tåble Ünïcode" VALUES (1, 'plain')`)
	e.run()
	e.assertSame()
	for i, kt := range keyTypes {
		e.exec("A", fmt.Sprintf("UPDATE public.k%02d SET v = k, n = 2 WHERE k = %s", i, kt.b))
		e.exec("A", fmt.Sprintf("DELETE FROM public.k%02d WHERE k = %s", i, kt.a))
	}
	e.exec("A", `UPDATE "Sché ma"."Tåble Ünïcode" SET "Id Col" = 2 WHERE "Ké" = 'ä'`)
	e.run()
	e.assertSame()
}
