package replicate

import (
	"bytes"
	"encoding/binary"
	"testing"
)

func binaryCopy(tuples [][][]byte) []byte {
	var b bytes.Buffer
	// A bytes.Buffer grows or panics: its writes return no error.
	put := func(v any) { _ = binary.Write(&b, binary.BigEndian, v) }
	b.WriteString("PGCOPY\n\xff\r\n\x00")
	put(int32(0))
	put(int32(3))
	b.WriteString("ext")
	for _, t := range tuples {
		put(int16(len(t)))
		for _, f := range t {
			if f == nil {
				put(int32(-1))
				continue
			}
			put(int32(len(f)))
			b.Write(f)
		}
	}
	put(int16(-1))
	return b.Bytes()
}

func TestRowCounterBinary(t *testing.T) {
	var tuples [][][]byte
	for i := 0; i < 500; i++ {
		tuples = append(tuples, [][]byte{[]byte("12345678"), nil, bytes.Repeat([]byte{'x'}, i), {}})
	}
	stream := binaryCopy(tuples)
	for _, chunk := range []int{1, 2, 3, 7, 64, 4096, len(stream)} {
		c := newRowCounter(true)
		for i := 0; i < len(stream); i += chunk {
			end := i + chunk
			if end > len(stream) {
				end = len(stream)
			}
			write(t, c, stream[i:end])
		}
		if c.Rows() != 500 || !c.done {
			t.Errorf("chunks of %d: %d rows, done %v", chunk, c.Rows(), c.done)
		}
	}
}

func TestRowCounterText(t *testing.T) {
	c := newRowCounter(false)
	write(t, c, []byte("1\ta\n2\tb\\nc\n3"))
	write(t, c, []byte("\tz\n"))
	if c.Rows() != 3 {
		t.Errorf("rows = %d", c.Rows())
	}
}

func TestCompatible(t *testing.T) {
	cases := []struct {
		src, dst string
		want     bool
	}{
		{"integer", "integer", true},
		{"integer", "bigint", true},
		{"bigint", "integer", false},
		{"character varying(10)", "text", true},
		{"character varying(10)", "character varying(20)", true},
		{"character varying(20)", "character varying(10)", false},
		{"text", "character varying(10)", false},
		{"numeric(10,2)", "numeric", true},
		{"numeric", "numeric(10,2)", false},
		{"json", "jsonb", true},
		{"timestamp without time zone", "timestamp with time zone", false},
		{"mood", "mood", true},
	}
	for _, tc := range cases {
		if got := compatible(tc.src, tc.dst); got != tc.want {
			t.Errorf("compatible(%q, %q) = %v, want %v", tc.src, tc.dst, got, tc.want)
		}
	}
}

func write(t *testing.T, c *rowCounter, p []byte) {
	t.Helper()
	if _, err := c.Write(p); err != nil {
		t.Fatal(err)
	}
}
