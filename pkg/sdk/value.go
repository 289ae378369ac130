package sdk

import (
	"bytes"
	"encoding/hex"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// Kind says which Go type a Value holds.
type Kind uint8

// The kinds of Value. The host maps PostgreSQL types onto them as follows:
// boolean → KindBool; smallint, integer, bigint → KindInt; real, double
// precision → KindFloat; numeric → KindNumeric; text, varchar, char, name,
// citext → KindText; bytea → KindBytes; timestamp, timestamptz, date →
// KindTime; json, jsonb → KindJSON; anything else (uuid, interval, inet,
// arrays, enums, ...) → KindOther, as PostgreSQL's text output with the type's
// name.
const (
	KindNull Kind = iota
	KindBool
	KindInt
	KindFloat
	KindNumeric
	KindText
	KindBytes
	KindTime
	KindJSON
	KindOther
)

var kindNames = [...]string{"null", "bool", "int", "float", "numeric", "text", "bytes", "time", "json", "other"}

// String returns the kind's lowercase name, such as "int".
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Value is one typed column value. The zero Value is NULL. Build values with
// Null, Bool, Int, Float, Numeric, Text, Bytes, Time, JSON and Other, and read
// them with the method of the same name, which reports false when the value
// is of another kind (or NULL).
type Value struct {
	kind Kind
	b    bool
	i    int64
	f    float64
	s    string // numeric, text, other's text
	raw  []byte // bytes, json
	t    time.Time
	typ  string // other's type name
}

// Null returns the NULL value (the zero Value).
func Null() Value { return Value{} }

// Bool returns a boolean value.
func Bool(b bool) Value { return Value{kind: KindBool, b: b} }

// Int returns an integer value (smallint, integer, bigint).
func Int(i int64) Value { return Value{kind: KindInt, i: i} }

// Float returns a floating-point value (real, double precision).
func Float(f float64) Value { return Value{kind: KindFloat, f: f} }

// Numeric returns a numeric value from its decimal text, such as "12.50",
// "-3", "NaN" or "Infinity". The text is kept as given (no precision is lost).
func Numeric(decimal string) Value { return Value{kind: KindNumeric, s: decimal} }

// Text returns a text value.
func Text(s string) Value { return Value{kind: KindText, s: s} }

// Bytes returns a bytea value. The slice is not copied.
func Bytes(b []byte) Value { return Value{kind: KindBytes, raw: b} }

// Time returns a timestamp value. Times travel as instants: they arrive at the
// other side in UTC.
func Time(t time.Time) Value { return Value{kind: KindTime, t: t} }

// JSON returns a json or jsonb value from its raw text. The slice is not
// copied or checked.
func JSON(raw []byte) Value { return Value{kind: KindJSON, raw: raw} }

// Other returns a value of any other PostgreSQL type as its text output, with
// the type's name: Other("uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").
func Other(typeName, text string) Value { return Value{kind: KindOther, typ: typeName, s: text} }

// Kind returns the kind of v.
func (v Value) Kind() Kind { return v.kind }

// IsNull reports whether v is NULL.
func (v Value) IsNull() bool { return v.kind == KindNull }

// Bool returns v's boolean, and whether v is a KindBool.
func (v Value) Bool() (bool, bool) { return v.b, v.kind == KindBool }

// Int returns v's integer, and whether v is a KindInt.
func (v Value) Int() (int64, bool) { return v.i, v.kind == KindInt }

// Float returns v's float, and whether v is a KindFloat.
func (v Value) Float() (float64, bool) { return v.f, v.kind == KindFloat }

// Numeric returns v's decimal text, and whether v is a KindNumeric.
func (v Value) Numeric() (string, bool) {
	if v.kind != KindNumeric {
		return "", false
	}
	return v.s, true
}

// Text returns v's text, and whether v is a KindText.
func (v Value) Text() (string, bool) {
	if v.kind != KindText {
		return "", false
	}
	return v.s, true
}

// Bytes returns v's bytes, and whether v is a KindBytes.
func (v Value) Bytes() ([]byte, bool) {
	if v.kind != KindBytes {
		return nil, false
	}
	return v.raw, true
}

// Time returns v's time, and whether v is a KindTime.
func (v Value) Time() (time.Time, bool) {
	if v.kind != KindTime {
		return time.Time{}, false
	}
	return v.t, true
}

// JSON returns v's raw JSON text, and whether v is a KindJSON.
func (v Value) JSON() ([]byte, bool) {
	if v.kind != KindJSON {
		return nil, false
	}
	return v.raw, true
}

// Other returns v's PostgreSQL type name and text, and whether v is a
// KindOther.
func (v Value) Other() (typeName, text string, ok bool) {
	if v.kind != KindOther {
		return "", "", false
	}
	return v.typ, v.s, true
}

// String returns v as text for messages and logs: NULL as "NULL", bytes as
// \x hex, times in RFC 3339.
func (v Value) String() string {
	switch v.kind {
	case KindNull:
		return "NULL"
	case KindBool:
		return strconv.FormatBool(v.b)
	case KindInt:
		return strconv.FormatInt(v.i, 10)
	case KindFloat:
		return strconv.FormatFloat(v.f, 'g', -1, 64)
	case KindBytes:
		return `\x` + hex.EncodeToString(v.raw)
	case KindTime:
		return v.t.Format(time.RFC3339Nano)
	case KindJSON:
		return string(v.raw)
	default: // numeric, text, other
		return v.s
	}
}

// Equal reports whether v and w are the same value of the same kind. NULL
// equals NULL (unlike in SQL), a float NaN equals NaN, numerics compare by
// value ("1.50" equals "1.5"), times by instant, and Other values by type
// name and text.
func (v Value) Equal(w Value) bool {
	if v.kind != w.kind {
		return false
	}
	switch v.kind {
	case KindNull:
		return true
	case KindBool:
		return v.b == w.b
	case KindInt:
		return v.i == w.i
	case KindFloat:
		return v.f == w.f || (math.IsNaN(v.f) && math.IsNaN(w.f))
	case KindNumeric:
		if n, ok := v.Compare(w); ok {
			return n == 0
		}
		return v.s == w.s
	case KindText:
		return v.s == w.s
	case KindBytes, KindJSON:
		return bytes.Equal(v.raw, w.raw)
	case KindTime:
		return v.t.Equal(w.t)
	default:
		return v.typ == w.typ && v.s == w.s
	}
}

// Compare orders v against w: -1 if v sorts before w, 0 if equal, +1 if after;
// ok is false when the two cannot be ordered. NULL sorts before every other
// value (as with ORDER BY ... NULLS FIRST). Int, Float and Numeric values
// compare with each other by numeric value, NaN above everything as in
// PostgreSQL; bools false before true; texts and bytes byte by byte (the "C"
// collation, not the database's); times by instant. JSON and Other values,
// and values of different kinds, cannot be ordered.
func (v Value) Compare(w Value) (n int, ok bool) {
	switch {
	case v.kind == KindNull && w.kind == KindNull:
		return 0, true
	case v.kind == KindNull:
		return -1, true
	case w.kind == KindNull:
		return 1, true
	}
	if v.isNumber() && w.isNumber() {
		a, aok := v.number()
		b, bok := w.number()
		if !aok || !bok {
			return 0, false
		}
		return a.compare(b), true
	}
	if v.kind != w.kind {
		return 0, false
	}
	switch v.kind {
	case KindBool:
		switch {
		case v.b == w.b:
			return 0, true
		case w.b:
			return -1, true
		default:
			return 1, true
		}
	case KindText:
		return strings.Compare(v.s, w.s), true
	case KindBytes:
		return bytes.Compare(v.raw, w.raw), true
	case KindTime:
		return v.t.Compare(w.t), true
	}
	return 0, false
}

func (v Value) isNumber() bool {
	return v.kind == KindInt || v.kind == KindFloat || v.kind == KindNumeric
}

// number is a numeric value in a form that orders ints, floats and numerics
// together: class -1 is -Infinity, 0 a finite value in r, 1 +Infinity, 2 NaN.
type number struct {
	class int
	r     *big.Rat
}

func (v Value) number() (number, bool) {
	switch v.kind {
	case KindInt:
		return number{r: new(big.Rat).SetInt64(v.i)}, true
	case KindFloat:
		switch {
		case math.IsNaN(v.f):
			return number{class: 2}, true
		case math.IsInf(v.f, 1):
			return number{class: 1}, true
		case math.IsInf(v.f, -1):
			return number{class: -1}, true
		}
		return number{r: new(big.Rat).SetFloat64(v.f)}, true
	case KindNumeric:
		switch s := strings.TrimSpace(v.s); {
		case strings.EqualFold(s, "NaN"):
			return number{class: 2}, true
		case strings.EqualFold(s, "Infinity"), strings.EqualFold(s, "+Infinity"), strings.EqualFold(s, "inf"), strings.EqualFold(s, "+inf"):
			return number{class: 1}, true
		case strings.EqualFold(s, "-Infinity"), strings.EqualFold(s, "-inf"):
			return number{class: -1}, true
		default:
			r, ok := new(big.Rat).SetString(s)
			return number{r: r}, ok
		}
	}
	return number{}, false
}

func (a number) compare(b number) int {
	if a.class != b.class {
		if a.class < b.class {
			return -1
		}
		return 1
	}
	if a.class != 0 {
		return 0
	}
	return a.r.Cmp(b.r)
}
