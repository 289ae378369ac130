package pg

import "strings"

// BaseType is a format_type name without its modifiers: "numeric(10,2)"
// is "numeric", "timestamp(3) with time zone" "timestamp with time zone".
func BaseType(typ string) string {
	for {
		i := strings.IndexByte(typ, '(')
		if i < 0 {
			return typ
		}
		j := strings.IndexByte(typ[i:], ')')
		if j < 0 {
			return typ
		}
		typ = typ[:i] + typ[i+j+1:]
	}
}
