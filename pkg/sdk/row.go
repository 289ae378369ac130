package sdk

import (
	"slices"
	"time"
)

// Column is one named, typed value of a Row.
type Column struct {
	Name string
	// Type is the column's PostgreSQL type as format_type writes it, such as
	// "bigint" or "timestamp with time zone". Rows from the host always carry
	// it; a plugin may leave it empty in a merged row, and the host fills it
	// in from the table.
	Type  string
	Value Value
}

// Row is a table row, or a key, as ordered columns. Columns are matched by
// name, never by position. A nil Row means "no row".
type Row []Column

// Get returns the value of the named column, and whether the row has it.
func (r Row) Get(name string) (Value, bool) {
	if i := r.index(name); i >= 0 {
		return r[i].Value, true
	}
	return Value{}, false
}

// Bool returns the named column's boolean; false when the column is absent,
// NULL or not a KindBool.
func (r Row) Bool(name string) (bool, bool) {
	v, _ := r.Get(name)
	return v.Bool()
}

// Int returns the named column's integer; false when the column is absent,
// NULL or not a KindInt.
func (r Row) Int(name string) (int64, bool) {
	v, _ := r.Get(name)
	return v.Int()
}

// Float returns the named column's float; false when the column is absent,
// NULL or not a KindFloat.
func (r Row) Float(name string) (float64, bool) {
	v, _ := r.Get(name)
	return v.Float()
}

// Text returns the named column's text; false when the column is absent,
// NULL or not a KindText.
func (r Row) Text(name string) (string, bool) {
	v, _ := r.Get(name)
	return v.Text()
}

// Time returns the named column's time; false when the column is absent,
// NULL or not a KindTime.
func (r Row) Time(name string) (time.Time, bool) {
	v, _ := r.Get(name)
	return v.Time()
}

// With returns a copy of r with the named column set to v: replaced in place
// (keeping its Type) when r has it, appended otherwise. r is not modified.
func (r Row) With(name string, v Value) Row {
	out := slices.Clone(r)
	if i := out.index(name); i >= 0 {
		out[i].Value = v
		return out
	}
	return append(out, Column{Name: name, Value: v})
}

// Clone returns a copy of r that can be changed without changing r (values
// holding bytes share them).
func (r Row) Clone() Row { return slices.Clone(r) }

func (r Row) index(name string) int {
	for i := range r {
		if r[i].Name == name {
			return i
		}
	}
	return -1
}
