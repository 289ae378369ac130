package sdk

import (
	"math"
	"testing"
	"time"
)

func TestCompare(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		a, b Value
		want int
		ok   bool
	}{
		{"ints", Int(1), Int(2), -1, true},
		{"equal ints", Int(7), Int(7), 0, true},
		{"int and float", Int(2), Float(1.5), 1, true},
		{"int and numeric", Int(10), Numeric("10.000"), 0, true},
		{"numerics by value", Numeric("9.99"), Numeric("10"), -1, true},
		{"negative numeric", Numeric("-0.5"), Numeric("-0.25"), -1, true},
		{"numeric NaN above all", Numeric("NaN"), Numeric("Infinity"), 1, true},
		{"numeric NaN equals float NaN", Numeric("NaN"), Float(math.NaN()), 0, true},
		{"-Infinity below all", Numeric("-Infinity"), Int(math.MinInt64), -1, true},
		{"float +Inf", Float(math.Inf(1)), Numeric("1e300"), 1, true},
		{"bad numeric", Numeric("ten"), Int(1), 0, false},
		{"NULL first", Null(), Int(-5), -1, true},
		{"NULL last arg", Text("a"), Null(), 1, true},
		{"NULLs equal", Null(), Null(), 0, true},
		{"bools", Bool(false), Bool(true), -1, true},
		{"texts bytewise", Text("B"), Text("a"), -1, true},
		{"bytes", Bytes([]byte{1, 2}), Bytes([]byte{1, 3}), -1, true},
		{"times by instant", Time(t0), Time(t0.In(time.FixedZone("x", 3600)).Add(time.Second)), -1, true},
		{"json not ordered", JSON([]byte(`1`)), JSON([]byte(`2`)), 0, false},
		{"other not ordered", Other("uuid", "a"), Other("uuid", "b"), 0, false},
		{"text and int", Text("1"), Int(1), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.a.Compare(tt.b)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("Compare(%s, %s) = %d, %v; want %d, %v", tt.a, tt.b, got, ok, tt.want, tt.ok)
			}
			if !ok {
				return
			}
			if back, _ := tt.b.Compare(tt.a); back != -tt.want {
				t.Fatalf("Compare(%s, %s) = %d, not the opposite of %d", tt.b, tt.a, back, tt.want)
			}
		})
	}
}

func TestEqual(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		a, b Value
		want bool
	}{
		{"NULL is NULL", Null(), Value{}, true},
		{"ints", Int(3), Int(3), true},
		{"kinds differ", Int(3), Float(3), false},
		{"numeric by value", Numeric("1.50"), Numeric("1.5"), true},
		{"NaN floats", Float(math.NaN()), Float(math.NaN()), true},
		{"times in other zones", Time(t0), Time(t0.In(time.FixedZone("x", 7200))), true},
		{"bytes", Bytes([]byte("ab")), Bytes([]byte("ab")), true},
		{"other needs the same type", Other("uuid", "x"), Other("inet", "x"), false},
		{"json text", JSON([]byte(`{"a":1}`)), JSON([]byte(`{"a": 1}`)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Equal(tt.b); got != tt.want {
				t.Fatalf("%s.Equal(%s) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
		})
	}
}

func TestValueAccessors(t *testing.T) {
	if _, ok := Null().Int(); ok {
		t.Error("NULL read as an int")
	}
	if i, ok := Int(4).Int(); !ok || i != 4 {
		t.Errorf("Int(4).Int() = %d, %v", i, ok)
	}
	if _, ok := Int(4).Float(); ok {
		t.Error("an int read as a float")
	}
	if typ, text, ok := Other("uuid", "u").Other(); !ok || typ != "uuid" || text != "u" {
		t.Errorf("Other = %q %q %v", typ, text, ok)
	}
	if s := Bytes([]byte{0xde, 0xad}).String(); s != `\xdead` {
		t.Errorf("bytes String = %q", s)
	}
	if s := Null().String(); s != "NULL" {
		t.Errorf("NULL String = %q", s)
	}
}

func TestRow(t *testing.T) {
	r := Row{{Name: "id", Type: "bigint", Value: Int(1)}, {Name: "qty", Type: "integer", Value: Int(5)}}
	if q, ok := r.Int("qty"); !ok || q != 5 {
		t.Fatalf("Int(qty) = %d, %v", q, ok)
	}
	if _, ok := r.Int("nope"); ok {
		t.Fatal("a missing column was found")
	}
	if _, ok := r.Text("qty"); ok {
		t.Fatal("an int column read as text")
	}
	w := r.With("qty", Int(9)).With("note", Text("x"))
	if q, _ := r.Int("qty"); q != 5 {
		t.Fatal("With changed the original row")
	}
	if q, _ := w.Int("qty"); q != 9 || w[1].Type != "integer" || len(w) != 3 || w[2].Name != "note" {
		t.Fatalf("With gave %v", w)
	}
	if Row(nil).Clone() != nil {
		t.Fatal("Clone of no row is a row")
	}
}
