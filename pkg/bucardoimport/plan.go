package bucardoimport

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/gobucardo/gobucardo/pkg/catalog"
)

// Verb is what the import does with one object.
type Verb string

// The verbs of a plan.
const (
	// Create adds an object gobucardo's catalog lacks.
	Create Verb = "create"
	// Unchanged is an object gobucardo's catalog has already, the same.
	Unchanged Verb = "unchanged"
	// Replace overwrites an object that differs (with Options.Replace).
	Replace Verb = "replace"
	// Refuse is an object that differs, without Options.Replace: the whole
	// import is refused.
	Refuse Verb = "refuse"
)

// Action is one object of the plan: what it will be in gobucardo's
// catalog, and for Replace and Refuse, what differs.
type Action struct {
	Verb    Verb   `json:"action"`
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Detail  string `json:"detail"`
	Differs string `json:"differs,omitempty"`
	// The object, by Kind (never shown: DB holds the password).
	DB       *catalog.DB        `json:"-"`
	Members  []catalog.Member   `json:"-"`
	Relation *catalog.Relation  `json:"-"`
	RelGroup []catalog.Relation `json:"-"`
	Sync     *catalog.Sync      `json:"-"`
}

// Note is a setting of Bucardo's catalog that the import cannot carry,
// and why.
type Note struct {
	Object  string `json:"object"`
	Setting string `json:"setting"`
	Why     string `json:"why"`
}

// Plan is what importing a Bucardo catalog does.
type Plan struct {
	Version string   `json:"bucardo_version"`
	Actions []Action `json:"actions"`
	Notes   []Note   `json:"not_carried"`
}

// Existing is what gobucardo's catalog holds.
type Existing struct {
	DBs       []catalog.DB
	DBGroups  []catalog.DBGroup
	Relations []catalog.Relation
	RelGroups []catalog.RelGroup
	Syncs     []catalog.Sync
}

// Options change the plan.
type Options struct {
	// Replace overwrites objects that exist with other settings (Replace
	// instead of Refuse). A replaced sync keeps its status in gobucardo.
	Replace bool
}

// SyncsInactive says how imported syncs start; mcp prints it with a plan.
const SyncsInactive = "Syncs are created inactive and without gobucardo's capture: Bucardo keeps replicating, and nothing of " +
	"gobucardo runs or writes on the replicated dbs until the cut-over (see README, \"Coming from Bucardo\")"

// Refused returns the actions that refuse the import.
func (p *Plan) Refused() []Action {
	var out []Action
	for _, a := range p.Actions {
		if a.Verb == Refuse {
			out = append(out, a)
		}
	}
	return out
}

// Count returns how many actions have verb v.
func (p *Plan) Count(v Verb) int {
	n := 0
	for _, a := range p.Actions {
		if a.Verb == v {
			n++
		}
	}
	return n
}

// planner holds what Make has decided so far.
type planner struct {
	bc    Catalog
	have  Existing
	opts  Options
	plan  Plan
	dbOK  map[string]bool // dbs carried
	goats map[int]Goat
	// goatOK: goats carried (their db is).
	herdOK  map[string]bool
	groupOK map[string]bool
}

// Make plans the import of Bucardo's catalog bc into gobucardo's catalog,
// which holds have. It is pure: the same inputs give the same plan.
func Make(bc Catalog, have Existing, opts Options) Plan {
	p := &planner{bc: bc, have: have, opts: opts, plan: Plan{Version: bc.Version},
		dbOK: map[string]bool{}, goats: map[int]Goat{}, herdOK: map[string]bool{}, groupOK: map[string]bool{}}
	for _, g := range bc.Goats {
		p.goats[g.ID] = g
	}
	p.dbs()
	p.dbGroups()
	p.relations()
	p.relGroups()
	p.syncs()
	p.customCodes()
	p.config()
	return p.plan
}

func (p *planner) note(object, setting, why string) {
	p.plan.Notes = append(p.plan.Notes, Note{Object: object, Setting: setting, Why: why})
}

// add records an action for an object, comparing it with the existing one
// (nil when there is none); differs describes what differs, "" if nothing.
func (p *planner) add(a Action, exists bool, differs string) {
	switch {
	case !exists:
		a.Verb = Create
	case differs == "":
		a.Verb = Unchanged
	case p.opts.Replace:
		a.Verb, a.Differs = Replace, differs
	default:
		a.Verb, a.Differs = Refuse, differs
	}
	p.plan.Actions = append(p.plan.Actions, a)
}

// validName notes an object whose name gobucardo cannot take.
func (p *planner) validName(kind, name string) bool {
	if err := catalog.ValidName(kind, name); err != nil {
		p.note(kind+" "+name, "name", err.Error()+"; rename it in Bucardo and import again")
		return false
	}
	return true
}

func (p *planner) dbs() {
	for _, b := range p.bc.DBs {
		obj := "db " + b.Name
		if b.Type != "postgres" {
			p.note(obj, "dbtype="+b.Type, "gobucardo replicates PostgreSQL only: the db is left out, with its tables and its place in dbgroups")
			continue
		}
		if !p.validName(catalog.KindDB, b.Name) {
			continue
		}
		d, notes, err := DBFrom(b)
		for _, n := range notes {
			p.note(obj, n[0], n[1])
		}
		if err != nil {
			p.note(obj, "connection", err.Error()+": the db is left out")
			continue
		}
		p.dbOK[b.Name] = true
		i := slices.IndexFunc(p.have.DBs, func(x catalog.DB) bool { return x.Name == d.Name })
		differs := ""
		if i >= 0 {
			differs = dbDiff(p.have.DBs[i], d)
		}
		p.add(Action{Kind: catalog.KindDB, Name: d.Name, Detail: d.Display() + statusDetail(d.Status), DB: &d}, i >= 0, differs)
	}
}

func statusDetail(status string) string {
	if status == catalog.StatusInactive {
		return ", inactive"
	}
	return ""
}

// DBFrom converts a Bucardo db to gobucardo's, with notes (setting, why)
// on what is not carried. Its error says why the db cannot be carried.
func DBFrom(b DB) (catalog.DB, [][2]string, error) {
	var notes [][2]string
	d := catalog.DB{Name: b.Name, Host: b.Host, DBName: b.DBName, User: b.User, Password: b.Pass,
		Service: b.Service, Status: catalog.StatusActive, MakeDelta: b.MakeDelta}
	switch b.Status {
	case "inactive":
		d.Status = catalog.StatusInactive
	case "stalled":
		notes = append(notes, [2]string{"status=stalled", "gobucardo has no stalled state: imported active"})
	}
	if b.Port != "" {
		n, err := strconv.Atoi(b.Port)
		if err != nil || n < 1 || n > 65535 {
			return d, notes, fmt.Errorf("dbport %q is not a port number", b.Port)
		}
		d.Port = n
	}
	// dbdsn (a DBI DSN, dbi:Pg:k=v;k=v) overrides the parts, as in Bucardo;
	// dbconn adds k=v pairs to them.
	extra := b.Conn
	if b.DSN != "" {
		_, rest, ok := strings.Cut(b.DSN, ":Pg:")
		if !ok {
			return d, notes, fmt.Errorf("dbdsn is not a DBI DSN for DBD::Pg (dbi:Pg:...)")
		}
		d.Host, d.Port, d.DBName, d.Service = "", 0, "", ""
		extra = rest + ";" + b.Conn
	}
	for _, kv := range strings.FieldsFunc(extra, func(r rune) bool { return r == ';' || r == ' ' }) {
		k, v, _ := strings.Cut(kv, "=")
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "dbname", "db", "database":
			d.DBName = v
		case "host":
			d.Host = v
		case "port":
			n, err := strconv.Atoi(v)
			if err != nil {
				return d, notes, fmt.Errorf("port %q in its connection string is not a port number", v)
			}
			d.Port = n
		case "user":
			d.User = v
		case "password":
			d.Password = v
		case "service":
			d.Service = v
		case "sslmode":
			d.SSLMode = strings.ToLower(v)
		default:
			notes = append(notes, [2]string{"dbconn " + k, "gobucardo's db takes dbname, host, port, user, password, sslmode and service: add the setting with mcp update db " + b.Name + " dsn=... if it matters"})
		}
	}
	if b.PGPass != "" {
		notes = append(notes, [2]string{"pgpass=" + b.PGPass, "gobucardo does not read a password file per db: libpq reads ~/.pgpass (or PGPASSFILE) of the user running mcp"})
	}
	return d, notes, nil
}

// dbDiff names the settings of want that have differs from have ("" if
// none). Passwords are compared, never shown.
func dbDiff(have, want catalog.DB) string {
	var d []string
	cmp := func(name string, a, b any) {
		if a != b {
			d = append(d, name)
		}
	}
	cmp("connection", have.ConnString(), want.ConnString())
	cmp("status", have.Status, want.Status)
	cmp("makedelta", have.MakeDelta, want.MakeDelta)
	return strings.Join(d, ", ")
}

func (p *planner) dbGroups() {
	for _, g := range p.bc.DBGroups {
		if !p.validName(catalog.KindDBGroup, g.Name) {
			continue
		}
		var ms []catalog.Member
		for _, m := range g.Members {
			if !p.dbOK[m.DB] {
				p.note("dbgroup "+g.Name, "member "+m.DB, "db "+m.DB+" is not carried (see above): the dbgroup is imported without it")
				continue
			}
			role, err := catalog.ParseRole(m.Role)
			if err != nil {
				p.note("dbgroup "+g.Name, "member "+m.DB+":"+m.Role, err.Error())
				continue
			}
			ms = append(ms, catalog.Member{DB: m.DB, Role: role})
		}
		if len(ms) == 0 {
			p.note("dbgroup "+g.Name, "members", "none of its dbs is carried: the dbgroup is left out")
			continue
		}
		p.groupOK[g.Name] = true
		i := slices.IndexFunc(p.have.DBGroups, func(x catalog.DBGroup) bool { return x.Name == g.Name })
		differs := ""
		if i >= 0 && !p.have.DBGroups[i].SameMembers(ms) {
			differs = "members (" + catalog.DescribeMembers(p.have.DBGroups[i].Members) + " in gobucardo)"
		}
		p.add(Action{Kind: catalog.KindDBGroup, Name: g.Name, Detail: catalog.DescribeMembers(ms), Members: ms}, i >= 0, differs)
	}
}

// RelationFrom converts a goat to a gobucardo relation without its key
// (mcp reads the key from the db, as mcp add table does), with notes
// (setting, why) on what is not carried.
func RelationFrom(g Goat) (catalog.Relation, [][2]string) {
	r := catalog.Relation{DB: g.DB, Schema: g.Schema, Name: g.Name, Kind: catalog.KindTable}
	if g.Kind == "sequence" {
		r.Kind = catalog.KindSequence
	}
	var notes [][2]string
	no := func(setting, why string) { notes = append(notes, [2]string{setting, why}) }
	if g.ConflictStrategy != "" {
		s, err := catalog.ParseConflictStrategy(g.ConflictStrategy)
		if err != nil {
			no("conflict_strategy="+g.ConflictStrategy, err.Error()+"; the table follows its sync's")
		} else {
			r.ConflictStrategy = s
		}
	}
	switch v := strings.ToLower(g.MakeDelta); v {
	case "", "inherits", "inherit":
	default:
		b, err := catalog.ParseBool(v)
		if err != nil {
			no("makedelta="+g.MakeDelta, "gobucardo's makedelta per table is on, off or inherit (a list of dbs is not): it inherits its db's")
		} else {
			r.MakeDelta = &b
		}
	}
	if g.Autokick != nil {
		no("autokick="+strconv.FormatBool(*g.Autokick), "gobucardo sets autokick per sync, not per table")
	}
	if g.RebuildIndex != nil && *g.RebuildIndex != 0 {
		no("rebuild_index="+strconv.Itoa(*g.RebuildIndex), "gobucardo does not rebuild indexes around a copy")
	}
	if g.Ghost {
		no("ghost=true", "gobucardo has no ghost tables: it is imported as an ordinary "+r.Kind)
	}
	if r.Kind == catalog.KindTable {
		if !g.AnalyzeAfterCopy {
			no("analyze_after_copy=false", "gobucardo has no per-table analyze_after_copy")
		}
		if !g.VacuumAfterCopy {
			no("vacuum_after_copy=false", "gobucardo has no per-table vacuum_after_copy")
		}
		if !g.StrictChecking {
			lenient := false
			r.StrictChecking = &lenient
		}
		if g.DeltaBypass {
			no("delta_bypass=true", "gobucardo has no delta bypass")
		}
	}
	return r, notes
}

func relationKey(db, schema, name string) string { return db + "\x00" + schema + "\x00" + name }

func (p *planner) relations() {
	for _, g := range p.bc.Goats {
		if !p.dbOK[g.DB] {
			continue // the db's note covers it
		}
		r, notes := RelationFrom(g)
		obj := r.Kind + " " + r.Display() + " of db " + r.DB
		for _, n := range notes {
			p.note(obj, n[0], n[1])
		}
		i := slices.IndexFunc(p.have.Relations, func(x catalog.Relation) bool {
			return relationKey(x.DB, x.Schema, x.Name) == relationKey(r.DB, r.Schema, r.Name)
		})
		differs := ""
		if i >= 0 {
			differs = relationDiff(p.have.Relations[i], r)
		}
		detail := "of db " + r.DB
		if r.ConflictStrategy != "" {
			detail += ", conflict_strategy " + r.ConflictStrategy
		}
		if r.MakeDelta != nil {
			detail += ", makedelta " + strconv.FormatBool(*r.MakeDelta)
		}
		if r.StrictChecking != nil {
			detail += ", strict_checking " + strconv.FormatBool(*r.StrictChecking)
		}
		p.add(Action{Kind: r.Kind, Name: r.Display(), Detail: detail, Relation: &r}, i >= 0, differs)
	}
}

func relationDiff(have, want catalog.Relation) string {
	var d []string
	if have.Kind != want.Kind {
		d = append(d, "kind")
	}
	if have.ConflictStrategy != want.ConflictStrategy {
		d = append(d, "conflict_strategy")
	}
	if !sameBool(have.MakeDelta, want.MakeDelta) {
		d = append(d, "makedelta")
	}
	if !sameBool(have.StrictChecking, want.StrictChecking) {
		d = append(d, "strict_checking")
	}
	return strings.Join(d, ", ")
}

// sameBool says whether two optional settings are the same (both unset,
// or both set to the same value).
func sameBool(a, b *bool) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

func (p *planner) relGroups() {
	for _, h := range p.bc.Herds {
		if !p.validName(catalog.KindRelGroup, h.Name) {
			continue
		}
		var rs []catalog.Relation
		skipped := false
		for _, id := range h.Goats {
			g, ok := p.goats[id]
			if !ok || !p.dbOK[g.DB] {
				skipped = true
				continue
			}
			r, _ := RelationFrom(g)
			rs = append(rs, r)
		}
		if skipped {
			p.note("relgroup "+h.Name, "relations", "its relations are of a db that is not carried: the relgroup is left out")
			continue
		}
		p.herdOK[h.Name] = true
		i := slices.IndexFunc(p.have.RelGroups, func(x catalog.RelGroup) bool { return x.Name == h.Name })
		differs := ""
		if i >= 0 && !sameRelations(p.have.RelGroups[i].Relations, rs) {
			differs = "relations (" + describeRelations(p.have.RelGroups[i].Relations) + " in gobucardo)"
		}
		p.add(Action{Kind: catalog.KindRelGroup, Name: h.Name, Detail: describeRelations(rs), RelGroup: rs}, i >= 0, differs)
	}
}

func sameRelations(a, b []catalog.Relation) bool {
	return slices.EqualFunc(a, b, func(x, y catalog.Relation) bool {
		return relationKey(x.DB, x.Schema, x.Name) == relationKey(y.DB, y.Schema, y.Name)
	})
}

func describeRelations(rs []catalog.Relation) string {
	if len(rs) == 0 {
		return "no relations"
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.Display()
	}
	return "of db " + rs[0].DB + ": " + strings.Join(parts, ", ")
}

// SyncFrom converts a Bucardo sync to gobucardo's, inactive, with its
// options set as mcp add sync sets them (catalog.Sync.Set), and notes
// (setting, why) on what is not carried. defaultIsolation is
// bucardo_config's isolation_level, for a sync without its own.
func SyncFrom(b Sync, defaultIsolation string) (catalog.Sync, [][2]string) {
	s := catalog.NewSync(b.Name)
	s.RelGroup, s.DBGroup = b.Herd, b.DBGroup
	var notes [][2]string
	no := func(setting, why string) { notes = append(notes, [2]string{setting, why}) }
	iso := b.IsolationLevel
	if iso == "" {
		iso = defaultIsolation
	}
	opts := [][2]string{
		{"autokick", strconv.FormatBool(b.Autokick)},
		{"checktime", dur(b.Checktime)},
		{"conflict_strategy", b.ConflictStrategy},
		{"onetimecopy", strconv.Itoa(b.OneTimeCopy)},
		{"stayalive", strconv.FormatBool(b.Stayalive)},
		{"kidsalive", strconv.FormatBool(b.Kidsalive)},
		{"lifetime", dur(b.Lifetime)},
		{"maxkicks", strconv.Itoa(b.MaxKicks)},
		{"deletemethod", b.DeleteMethod},
		{"overdue", dur(b.Overdue)},
		{"expired", dur(b.Expired)},
		{"strict_checking", strconv.FormatBool(b.StrictChecking)},
	}
	if iso != "" {
		opts = append(opts, [2]string{"isolation_level", iso})
	}
	for _, o := range opts {
		if err := s.Set(o[0], o[1]); err != nil {
			no(o[0]+"="+o[1], err.Error()+"; gobucardo's default is kept")
		}
	}
	if err := s.CheckThresholds(); err != nil {
		no("overdue/expired", err.Error())
		s.Overdue, s.Expired = 0, 0
	}
	s.Status = catalog.StatusInactive
	ints := []struct {
		name string
		v    int
		why  string
	}{
		{"rebuild_index", b.RebuildIndex, "gobucardo does not drop and rebuild indexes around a copy"},
		{"priority", b.Priority, "gobucardo runs every sync in a process of its own: there is no order between syncs"},
	}
	for _, o := range ints {
		if o.v != 0 {
			no(o.name+"="+strconv.Itoa(o.v), o.why)
		}
	}
	bools := []struct {
		name     string
		v, deflt bool
		why      string
	}{
		{"analyze_after_copy", b.AnalyzeAfterCopy, true, "gobucardo has no analyze_after_copy option"},
		{"vacuum_after_copy", b.VacuumAfterCopy, false, "gobucardo has no vacuum_after_copy option"},
		{"track_rates", b.TrackRates, false, "gobucardo records every run in gobucardo.syncrun (mcp status shows rows/s) instead"},
	}
	for _, o := range bools {
		if o.v != o.deflt {
			no(o.name+"="+strconv.FormatBool(o.v), o.why)
		}
	}
	if b.CopyExtra != "" {
		no("copyextra="+b.CopyExtra, "gobucardo's COPY takes no extra options")
	}
	return s, notes
}

func dur(d interface{ Seconds() float64 }) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

func syncDiff(have, want catalog.Sync) string {
	// The status is gobucardo's own (the cut-over activates the syncs).
	want.Status, want.Created = have.Status, have.Created
	if have == want {
		return ""
	}
	var d []string
	for _, f := range []struct {
		name string
		a, b any
	}{
		{"relgroup", have.RelGroup, want.RelGroup}, {"dbgroup", have.DBGroup, want.DBGroup},
		{"autokick", have.Autokick, want.Autokick}, {"checktime", have.Checktime, want.Checktime},
		{"conflict_strategy", have.ConflictStrategy, want.ConflictStrategy}, {"onetimecopy", have.OneTimeCopy, want.OneTimeCopy},
		{"stayalive", have.Stayalive, want.Stayalive}, {"kidsalive", have.Kidsalive, want.Kidsalive},
		{"isolation_level", have.IsolationLevel, want.IsolationLevel}, {"lifetime", have.Lifetime, want.Lifetime},
		{"maxkicks", have.MaxKicks, want.MaxKicks}, {"makedelta", have.MakeDelta, want.MakeDelta},
		{"commit_every", have.CommitEvery, want.CommitEvery}, {"deletemethod", have.DeleteMethod, want.DeleteMethod},
		{"overdue", have.Overdue, want.Overdue}, {"expired", have.Expired, want.Expired},
		{"strict_checking", have.StrictChecking, want.StrictChecking},
	} {
		if f.a != f.b {
			d = append(d, f.name)
		}
	}
	return strings.Join(d, ", ")
}

func (p *planner) syncs() {
	for _, b := range p.bc.Syncs {
		obj := "sync " + b.Name
		if !p.validName(catalog.KindSync, b.Name) {
			continue
		}
		switch {
		case b.Herd == "" || b.DBGroup == "":
			p.note(obj, "relgroup/dbgroup", "it has no relgroup or no dbgroup in Bucardo: left out")
			continue
		case !p.herdOK[b.Herd]:
			p.note(obj, "relgroup="+b.Herd, "its relgroup is not carried (see above): left out")
			continue
		case !p.groupOK[b.DBGroup]:
			p.note(obj, "dbgroup="+b.DBGroup, "its dbgroup is not carried (see above): left out")
			continue
		}
		s, notes := SyncFrom(b, p.bc.IsolationLevel)
		for _, n := range notes {
			p.note(obj, n[0], n[1])
		}
		i := slices.IndexFunc(p.have.Syncs, func(x catalog.Sync) bool { return x.Name == s.Name })
		differs := ""
		if i >= 0 {
			differs = syncDiff(p.have.Syncs[i], s)
			if p.opts.Replace {
				s.Status = p.have.Syncs[i].Status
			}
		}
		detail := fmt.Sprintf("relgroup %s over dbgroup %s, %s (Bucardo: %s)", s.RelGroup, s.DBGroup, s.Status, b.Status)
		p.add(Action{Kind: catalog.KindSync, Name: s.Name, Detail: detail + describeOptions(s), Sync: &s}, i >= 0, differs)
	}
}

// describeOptions lists the options of s that differ from a new sync's.
func describeOptions(s catalog.Sync) string {
	d := catalog.NewSync(s.Name)
	var out []string
	add := func(name string, differs bool, v any) {
		if differs {
			out = append(out, fmt.Sprintf("%s=%v", name, v))
		}
	}
	add("autokick", s.Autokick != d.Autokick, s.Autokick)
	add("checktime", s.Checktime != d.Checktime, s.Checktime)
	add("conflict_strategy", s.ConflictStrategy != d.ConflictStrategy, s.ConflictStrategy)
	add("onetimecopy", s.OneTimeCopy != d.OneTimeCopy, s.OneTimeCopy)
	add("stayalive", s.Stayalive != d.Stayalive, s.Stayalive)
	add("kidsalive", s.Kidsalive != d.Kidsalive, s.Kidsalive)
	add("isolation_level", s.IsolationLevel != d.IsolationLevel, s.IsolationLevel)
	add("lifetime", s.Lifetime != d.Lifetime, s.Lifetime)
	add("maxkicks", s.MaxKicks != d.MaxKicks, s.MaxKicks)
	add("deletemethod", s.DeleteMethod != d.DeleteMethod, s.DeleteMethod)
	add("overdue", s.Overdue != d.Overdue, s.Overdue)
	add("expired", s.Expired != d.Expired, s.Expired)
	add("strict_checking", s.StrictChecking != d.StrictChecking, s.StrictChecking)
	if len(out) == 0 {
		return ""
	}
	return ", " + strings.Join(out, " ")
}

// closestPlugin names the example plugin nearest to a Bucardo hook.
func closestPlugin(whenrun string) string {
	switch whenrun {
	case "conflict":
		return "plugins/highest (whenrun=conflict; plugins/counters merges counter columns)"
	case "exception":
		return "plugins/parkunique (whenrun=exception)"
	case "before_sync", "after_sync", "before_txn", "after_txn":
		return "plugins/window (whenrun=" + whenrun + ")"
	}
	return "plugins/window (a run hook; gobucardo has no " + whenrun + " hook: before_sync, after_sync, before_txn and after_txn are the nearest)"
}

func (p *planner) customCodes() {
	for _, cc := range p.bc.CustomCodes {
		why := "Perl customcode cannot run in gobucardo: rewrite it as a plugin binary with pkg/sdk and register it with mcp add customcode; closest example: " +
			closestPlugin(cc.WhenRun)
		if len(cc.Maps) == 0 {
			p.note("customcode "+cc.Name, "whenrun="+cc.WhenRun+", not attached", why)
		}
		for _, m := range cc.Maps {
			at := "sync " + m.Sync
			if m.Goat != 0 {
				g := p.goats[m.Goat]
				at = "table " + catalog.DisplayName(g.Schema, g.Name) + " of db " + g.DB
			}
			p.note("customcode "+cc.Name, "whenrun="+cc.WhenRun+" on "+at, why)
		}
	}
}

func (p *planner) config() {
	for _, c := range p.bc.Config {
		p.note(c.Type+" "+c.Item, "bucardo_config "+c.Name+"="+c.Setting, "settings of bucardo_config per "+c.Type+" are not carried")
	}
}
