package replicate

import (
	"fmt"
	"strings"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/pg"
)

// SyncFrom is what a run of the sync needs, from its catalog entry.
func SyncFrom(d catalog.SyncDetail) Sync {
	s := Sync{Name: d.Name, OneTimeCopy: d.OneTimeCopy, CommitEvery: d.CommitEvery,
		IsolationLevel: d.IsolationLevel, DeleteMethod: d.DeleteMethod, ConflictStrategy: d.ConflictStrategy,
		CustomCode: d.CustomCode}
	for _, m := range d.Members {
		db := d.DBs[m.DB]
		s.DBs = append(s.DBs, DB{Name: m.DB, Role: m.Role, ConnString: db.ConnString(),
			MakeDelta: db.MakeDelta || d.MakeDelta, Inactive: db.Status == catalog.StatusInactive})
	}
	for _, r := range d.Relations {
		s.Relations = append(s.Relations, RelationFrom(d.Sync, r))
	}
	return s
}

// RelationFrom is what a run needs of relation r in sync s.
func RelationFrom(s catalog.Sync, r catalog.Relation) Relation {
	strict := s.StrictChecking
	if r.StrictChecking != nil {
		strict = *r.StrictChecking
	}
	return Relation{Schema: r.Schema, Name: r.Name, Sequence: r.Kind == catalog.KindSequence, KeyColumns: r.KeyColumns,
		ConflictStrategy: r.ConflictStrategy, MakeDelta: r.MakeDelta, Lenient: !strict}
}

// Secrets are the passwords of the sync's connection strings, for
// pg.RedactError.
func (s Sync) Secrets() []string {
	var out []string
	for _, d := range s.DBs {
		if pw := pg.Password(d.ConnString); pw != "" {
			out = append(out, pw)
		}
	}
	return out
}

// ConflictRecords are the conflicts as the catalog logs them.
func ConflictRecords(cs []Conflict) []catalog.ConflictRecord {
	out := make([]catalog.ConflictRecord, len(cs))
	for i, c := range cs {
		losers := make([]catalog.Loser, len(c.Losers))
		for j, l := range c.Losers {
			losers[j] = catalog.Loser{DB: l.DB, ChangedAt: l.ChangedAt, Row: l.Row}
		}
		out[i] = catalog.ConflictRecord{Schema: c.Schema, Name: c.Name, Key: c.Key, Strategy: c.Strategy, Winner: c.Winner, Losers: losers}
	}
	return out
}

// String is the progress as one line: "copy public.accounts 41200/100000".
func (p Progress) String() string {
	switch {
	case p.Table == "":
		return p.Phase
	case p.Total > 0:
		return fmt.Sprintf("%s %s %d/%d", p.Phase, p.Table, p.Rows, p.Total)
	case p.Rows > 0:
		return fmt.Sprintf("%s %s %d", p.Phase, p.Table, p.Rows)
	}
	return p.Phase + " " + p.Table
}

// Summary is the result as one line for syncrun and logs.
func (r Result) Summary() string {
	parked := ""
	if r.Parked > 0 {
		parked = fmt.Sprintf(", %d parked", r.Parked)
	}
	var more strings.Builder
	for _, s := range r.Skipped {
		fmt.Fprintf(&more, "; target %s skipped (%s), it catches up later", s.DB, s.Reason)
	}
	if len(r.CaughtUp) > 0 {
		fmt.Fprintf(&more, "; caught up: %s", strings.Join(r.CaughtUp, ", "))
	}
	if len(r.OmittedColumns) > 0 {
		fmt.Fprintf(&more, "; left out of the copy (strict_checking=false): %s", strings.Join(r.OmittedColumns, "; "))
	}
	return fmt.Sprintf("%d deleted, %d inserted, %d truncated, %d conflicts%s in %.3fs%s", r.Deletes, r.Inserts, r.Truncates,
		r.Conflicts, parked, r.Duration.Seconds(), more.String())
}

// ParkedRecords are parked rows as the catalog records them.
func ParkedRecords(ps []Parked) []catalog.ParkedRow {
	out := make([]catalog.ParkedRow, len(ps))
	for i, p := range ps {
		out[i] = catalog.ParkedRow{Sync: p.Sync, Schema: p.Schema, Name: p.Name, SourceDB: p.SourceDB, TargetDB: p.TargetDB,
			Key: p.Key, Row: p.Row, SQLState: p.SQLState, Error: p.Error, CustomCode: p.Code}
	}
	return out
}
