package replicate

import (
	"encoding/binary"
	"io"
	"sync/atomic"
)

// rowCounter counts the rows of a COPY stream as it passes, for progress:
// tuples of the binary format, lines of the text format.
type rowCounter struct {
	binary bool
	rows   atomic.Int64

	// binary parser state
	header  int    // header bytes still to skip (-1: not yet known)
	need    int    // bytes wanted for the current int field
	buf     []byte // partial int field
	skip    int64  // field bytes still to skip
	fields  int    // fields left in the current tuple
	started bool
	done    bool
}

func newRowCounter(binary bool) *rowCounter {
	return &rowCounter{binary: binary, header: -1}
}

// Rows returns the rows seen so far.
func (c *rowCounter) Rows() int64 { return c.rows.Load() }

// Write implements io.Writer; it never fails.
func (c *rowCounter) Write(p []byte) (int, error) {
	n := len(p)
	if !c.binary {
		var lines int64
		for _, b := range p {
			if b == '\n' {
				lines++
			}
		}
		c.rows.Add(lines)
		return n, nil
	}
	for len(p) > 0 && !c.done {
		p = c.step(p)
	}
	return n, nil
}

// binary COPY: 11-byte signature, int32 flags, int32 extension length and
// the extension; then per tuple an int16 field count (-1 ends the data) and
// per field an int32 length (-1 for NULL) and that many bytes.
const copySignatureLen = 11

func (c *rowCounter) step(p []byte) []byte {
	if !c.started {
		c.started = true
		c.need = copySignatureLen + 8
	}
	if c.skip > 0 {
		k := int64(len(p))
		if k > c.skip {
			k = c.skip
		}
		c.skip -= k
		return p[k:]
	}
	want := c.need - len(c.buf)
	if want > len(p) {
		c.buf = append(c.buf, p...)
		return nil
	}
	c.buf = append(c.buf, p[:want]...)
	p = p[want:]
	v := c.buf
	c.buf = c.buf[:0]
	switch {
	case c.header == -1: // signature + flags + extension length
		ext := int64(binary.BigEndian.Uint32(v[copySignatureLen+4:]))
		c.header = 0
		c.skip = ext
		c.need = 2
	case c.fields == 0: // tuple start: field count
		nf := int16(binary.BigEndian.Uint16(v))
		if nf < 0 {
			c.done = true
			return nil
		}
		c.rows.Add(1)
		c.fields = int(nf)
		c.need = 4
		if nf == 0 {
			c.need = 2
		}
	default: // field length
		l := int32(binary.BigEndian.Uint32(v))
		if l > 0 {
			c.skip = int64(l)
		}
		c.fields--
		if c.fields == 0 {
			c.need = 2
		} else {
			c.need = 4
		}
	}
	return p
}

var _ io.Writer = (*rowCounter)(nil)
