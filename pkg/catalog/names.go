package catalog

import (
	"regexp"
	"strings"

	"github.com/gobucardo/gobucardo/pkg/pg"
)

// NamePattern is a relation name as the user wrote it: [SCHEMA.]NAME where
// each part may be "double quoted" (taken literally, case and all) or
// contain the wildcards * and % (any run of characters). Without a schema,
// any schema matches.
type NamePattern struct {
	Raw    string
	Schema *part // nil: any schema
	Name   part
}

type part struct {
	text string
	re   *regexp.Regexp // non-nil when the part has wildcards
}

func (p part) match(s string) bool {
	if p.re != nil {
		return p.re.MatchString(s)
	}
	return p.text == s
}

// IsGlob reports whether the pattern has a wildcard.
func (n NamePattern) IsGlob() bool {
	return n.Name.re != nil || (n.Schema != nil && n.Schema.re != nil)
}

// Match reports whether schema.name matches the pattern.
func (n NamePattern) Match(schema, name string) bool {
	return (n.Schema == nil || n.Schema.match(schema)) && n.Name.match(name)
}

// ParseNamePattern splits s into its schema and name parts.
func ParseNamePattern(s string) (NamePattern, error) {
	parts, err := splitName(s)
	if err != nil {
		return NamePattern{}, err
	}
	n := NamePattern{Raw: s}
	switch len(parts) {
	case 1:
		n.Name = parts[0]
	case 2:
		n.Schema, n.Name = &parts[0], parts[1]
	default:
		return n, Invalidf("relation name %q has too many dots: write SCHEMA.NAME, and quote a name that contains a dot (\"my.table\")", s)
	}
	return n, nil
}

func splitName(s string) ([]part, error) {
	var parts []part
	var cur strings.Builder
	var glob, quoted, inQuote bool
	flush := func() error {
		if cur.Len() == 0 && !quoted {
			return Invalidf("relation name %q has an empty part: write SCHEMA.NAME", s)
		}
		p := part{text: cur.String()}
		if glob {
			p.re = globRE(cur.String())
		}
		parts = append(parts, p)
		cur.Reset()
		glob, quoted = false, false
		return nil
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inQuote && c == '"' && i+1 < len(s) && s[i+1] == '"':
			cur.WriteByte('"')
			i++
		case inQuote && c == '"':
			inQuote = false
		case inQuote:
			cur.WriteByte(c)
		case c == '"':
			inQuote, quoted = true, true
		case c == '.':
			if err := flush(); err != nil {
				return nil, err
			}
		case c == '*' || c == '%':
			glob = true
			cur.WriteByte(0) // marks a wildcard for globRE
		default:
			cur.WriteByte(c)
		}
	}
	if inQuote {
		return nil, Invalidf("relation name %q has an unterminated quote", s)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return parts, nil
}

// globRE compiles a part in which NUL bytes stand for wildcards.
func globRE(p string) *regexp.Regexp {
	pieces := strings.Split(p, "\x00")
	for i := range pieces {
		pieces[i] = regexp.QuoteMeta(pieces[i])
	}
	return regexp.MustCompile("^" + strings.Join(pieces, ".*") + "$")
}

// DisplayName shows schema.name as a user would type it, quoting where needed.
func DisplayName(schema, name string) string { return pg.Display(schema, name) }
