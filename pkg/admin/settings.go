package admin

// This file reads the arguments of the commands that add or change catalog
// objects: key=value pairs (parseKV) and what each key means for a db, a
// dbgroup, a table, a sync or a customcode (apply*). Everything here is
// pure: it never touches a database, and its errors are the sentences mcp
// prints, naming the object and the fix.

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/gobucardo/gobucardo/pkg/catalog"
	"github.com/gobucardo/gobucardo/pkg/pg"
)

// kv splits arguments into positional ones and key=value pairs, checking
// the keys against allowed (canonical name → aliases).
type kvArgs struct {
	pos   []string
	vals  map[string]string
	order []string
	// extra holds the pairs of keys not allowed, with parseKVExtra: the
	// settings a customcode passes to its plugin.
	extra map[string]string
}

func parseKV(args []string, allowed map[string][]string) (kvArgs, error) {
	return parseKVWith(args, allowed, false)
}

// parseKVExtra is parseKV that keeps unknown keys in kv.extra.
func parseKVExtra(args []string, allowed map[string][]string) (kvArgs, error) {
	return parseKVWith(args, allowed, true)
}

func parseKVWith(args []string, allowed map[string][]string, extra bool) (kvArgs, error) {
	canon := map[string]string{}
	var names []string
	for k, aliases := range allowed {
		canon[k] = k
		names = append(names, k)
		for _, a := range aliases {
			canon[a] = k
		}
	}
	kv := kvArgs{vals: map[string]string{}}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			kv.pos = append(kv.pos, a)
			continue
		}
		key, known := canon[strings.ToLower(k)]
		if !known && extra {
			if kv.extra == nil {
				kv.extra = map[string]string{}
			}
			if _, dup := kv.extra[k]; dup {
				return kv, usagef("%s is given twice", k)
			}
			kv.extra[k] = v
			continue
		}
		if !known {
			sort.Strings(names)
			return kv, usagef("unknown setting %q: use %s", k, strings.Join(names, ", "))
		}
		if _, dup := kv.vals[key]; dup {
			return kv, usagef("%s is given twice", key)
		}
		kv.vals[key] = v
		kv.order = append(kv.order, key)
	}
	return kv, nil
}

func (kv kvArgs) get(k string) (string, bool) {
	v, ok := kv.vals[k]
	return v, ok
}

var dbKeys = map[string][]string{
	"dsn": {"url"}, "dbname": {"db", "database"}, "host": {"dbhost"}, "port": {"dbport"},
	"user": {"dbuser", "username"}, "pass": {"password", "dbpass"}, "sslmode": nil, "service": {"dbservice"},
	"status": nil, "makedelta": nil,
}

// applyDBSettings sets d's fields from kv and reports whether any setting
// that changes how to connect was given.
func applyDBSettings(d *catalog.DB, kv kvArgs) (connChanged bool, err error) {
	for _, k := range kv.order {
		v := kv.vals[k]
		switch k {
		case "dsn":
			*d = catalog.DB{Name: d.Name, Status: d.Status, MakeDelta: d.MakeDelta, DSN: v}
		case "dbname", "host", "user", "pass", "sslmode", "service":
			if d.DSN != "" && kv.vals["dsn"] == "" {
				d.DSN = "" // switching from a whole dsn to parts
			}
		}
		switch k {
		case "dbname":
			d.DBName = v
		case "host":
			d.Host = v
		case "user":
			d.User = v
		case "pass":
			d.Password = v
		case "sslmode":
			d.SSLMode = strings.ToLower(v)
		case "service":
			d.Service = v
		case "port":
			n, convErr := strconv.Atoi(v)
			if convErr != nil || n < 1 || n > 65535 {
				return false, catalog.Invalidf("db %s: port=%q is not a port number (1-65535)", d.Name, v)
			}
			d.Port = n
		case "status":
			v = strings.ToLower(v)
			if v != catalog.StatusActive && v != catalog.StatusInactive {
				return false, catalog.Invalidf("db %s: status=%q is not valid: use active or inactive", d.Name, v)
			}
			d.Status = v
		case "makedelta":
			b, bErr := catalog.ParseBool(v)
			if bErr != nil {
				return false, catalog.Invalidf("db %s: makedelta=%q is not valid: use on or off", d.Name, v)
			}
			d.MakeDelta = b
		}
		if k != "status" && k != "makedelta" {
			connChanged = true
		}
	}
	if _, ok := kv.vals["dsn"]; ok && len(kv.vals) > 1 {
		for k := range kv.vals {
			if k != "dsn" && k != "status" && k != "makedelta" {
				return false, catalog.Invalidf("db %s: give either dsn= or the parts (dbname=, host=, ...), not both: put %s into the dsn", d.Name, k)
			}
		}
	}
	if d.DSN == "" && d.DBName == "" && d.Service == "" {
		return false, catalog.Invalidf("db %s: say how to reach it: dbname=D [host=H port=P user=U pass=P], service=S, or dsn=URL", d.Name)
	}
	if d.SSLMode != "" {
		switch d.SSLMode {
		case "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
		default:
			return false, catalog.Invalidf("db %s: sslmode=%q is not valid: use disable, allow, prefer, require, verify-ca or verify-full", d.Name, d.SSLMode)
		}
	}
	if _, err := pg.ParseConfig(d.ConnString()); err != nil {
		return false, catalog.Invalidf("db %s: the connection settings are not valid (%v): check the dsn's syntax", d.Name, err)
	}
	return connChanged, nil
}

// newDB is the db that mcp add db NAME key=value ... describes.
func newDB(name string, kv kvArgs) (catalog.DB, error) {
	d := catalog.DB{Name: name, Status: catalog.StatusActive}
	if err := catalog.ValidName(catalog.KindDB, d.Name); err != nil {
		return catalog.DB{}, err
	}
	if _, err := applyDBSettings(&d, kv); err != nil {
		return catalog.DB{}, err
	}
	return d, nil
}

// parseMembers reads DB[:ROLE] items; a db without a role is a source if it
// comes first, else a target (Bucardo's rule).
func parseMembers(items []string) ([]catalog.Member, error) {
	var ms []catalog.Member
	for _, it := range strings.FieldsFunc(strings.Join(items, ","), func(r rune) bool { return r == ',' || r == ' ' }) {
		name, role, hasRole := strings.Cut(it, ":")
		m := catalog.Member{DB: name, Role: catalog.RoleTarget}
		if len(ms) == 0 {
			m.Role = catalog.RoleSource
		}
		if hasRole {
			r, err := catalog.ParseRole(role)
			if err != nil {
				return nil, catalog.Invalidf("%s: %v", it, err)
			}
			m.Role = r
		}
		ms = append(ms, m)
	}
	if len(ms) == 0 {
		return nil, usagef("name the dbs as DB:ROLE, e.g. A:source B:target")
	}
	return ms, nil
}

// dbGroupChanges is what the arguments of mcp update dbgroup NAME ask for:
// name=NEW, DB:ROLE to add a db or change its role, and after the word
// remove, dbs to remove (add switches back).
type dbGroupChanges struct {
	newName   string
	set, drop []string
}

func parseDBGroupChanges(args []string) dbGroupChanges {
	var ch dbGroupChanges
	removing := false
	for _, a := range args {
		switch {
		case strings.HasPrefix(strings.ToLower(a), "name="):
			ch.newName = a[len("name="):]
		case strings.EqualFold(a, "remove"):
			removing = true
		case strings.EqualFold(a, "add"):
			removing = false
		case removing:
			ch.drop = append(ch.drop, a)
		default:
			ch.set = append(ch.set, a)
		}
	}
	return ch
}

// changeMembers returns the members of dbgroup group after ch: the dbs of
// ch.drop removed, then the DB:ROLE items of ch.set applied.
func changeMembers(group string, members []catalog.Member, ch dbGroupChanges) ([]catalog.Member, error) {
	ms := slices.Clone(members)
	for _, d := range ch.drop {
		i := memberIndex(ms, d)
		if i < 0 {
			return nil, catalog.Invalidf("db %q is not in dbgroup %q (%s)", d, group, catalog.DescribeMembers(ms))
		}
		ms = append(ms[:i:i], ms[i+1:]...)
	}
	for _, it := range ch.set {
		db, role, ok := strings.Cut(it, ":")
		if !ok {
			return nil, usagef("%q: give DB:ROLE (source, target or fullcopy)", it)
		}
		r, err := catalog.ParseRole(role)
		if err != nil {
			return nil, catalog.Invalidf("%s: %v", it, err)
		}
		if i := memberIndex(ms, db); i >= 0 {
			ms[i].Role = r
		} else {
			ms = append(ms, catalog.Member{DB: db, Role: r})
		}
	}
	return ms, nil
}

func memberIndex(ms []catalog.Member, db string) int {
	for i, m := range ms {
		if m.DB == db {
			return i
		}
	}
	return -1
}

var relationKeys = map[string][]string{
	"db": {"database"}, "relgroup": {"herd"}, "conflict_strategy": {"conflict", "standard_conflict"}, "makedelta": nil,
	"strict_checking": nil,
}

// tableUpdateKeys are the keys of mcp update table.
var tableUpdateKeys = map[string][]string{
	"db": {"database"}, "conflict_strategy": {"conflict", "standard_conflict"}, "makedelta": nil,
	"strict_checking": nil,
}

// addAllKeys are the keys of mcp add all tables|sequences.
var addAllKeys = map[string][]string{"db": {"database"}, "relgroup": {"herd"}}

// dbKey is the one key of the commands that name relations of a db:
// add relgroup, update relgroup, remove.
var dbKey = map[string][]string{"db": {"database"}}

// relationSettings applies conflict_strategy=, makedelta= and
// strict_checking= to r.
func relationSettings(r *catalog.Relation, kv kvArgs) error {
	if err := tableBool(r, kv, "strict_checking", "sync", "use true, false or inherit", &r.StrictChecking); err != nil {
		return err
	}
	if v, ok := kv.get("conflict_strategy"); ok {
		if r.Kind != catalog.KindTable {
			return catalog.Invalidf("conflict_strategy applies to tables, not to %s %s", r.Kind, r.Display())
		}
		if v == "" || strings.EqualFold(v, "inherit") {
			r.ConflictStrategy = "" // as the sync says
		} else {
			s, err := catalog.ParseConflictStrategy(v)
			if err != nil {
				return fmt.Errorf("table %s: %w", r.Display(), err)
			}
			r.ConflictStrategy = s
		}
	}
	return tableBool(r, kv, "makedelta", "db", "use on, off or inherit", &r.MakeDelta)
}

// tableBool sets *dst from a table's own on/off option key of kv, nil
// for inherit ("", "inherit" or from, what it inherits from).
func tableBool(r *catalog.Relation, kv kvArgs, key, from, use string, dst **bool) error {
	v, ok := kv.get(key)
	if !ok {
		return nil
	}
	if r.Kind != catalog.KindTable {
		return catalog.Invalidf("%s applies to tables, not to %s %s", key, r.Kind, r.Display())
	}
	switch strings.ToLower(v) {
	case "", "inherit", from:
		*dst = nil
		return nil
	}
	b, err := catalog.ParseBool(v)
	if err != nil {
		return catalog.Invalidf("table %s: %s=%q is not valid: %s", r.Display(), key, v, use)
	}
	*dst = &b
	return nil
}

var syncKeys = func() map[string][]string {
	m := map[string][]string{
		"relgroup": {"herd"}, "tables": {"table", "relations", "relation"}, "dbs": {"databases", "database"},
		"dbgroup": nil, "conflict_strategy": {"conflict", "standard_conflict"}, "isolation_level": {"txnmode"},
		"autokick": {"ping"}, "commit_every": {"commitevery"},
	}
	for _, o := range catalog.SyncOptions {
		if _, ok := m[o]; !ok {
			m[o] = nil
		}
	}
	return m
}()

// applySyncOptions sets the options of kv other than the structural ones,
// then checks those that go together (expired not below overdue, with the
// values s had for those not given).
func applySyncOptions(s *catalog.Sync, kv kvArgs) error {
	for _, k := range kv.order {
		switch k {
		case "relgroup", "tables", "dbs", "dbgroup":
			continue
		}
		if err := s.Set(k, kv.vals[k]); err != nil {
			return err
		}
	}
	return s.CheckThresholds()
}

var customCodeKeys = map[string][]string{
	"plugin": {"src_code", "path"}, "whenrun": nil, "sync": nil, "table": {"relation"}, "db": nil,
	"priority": nil, "status": nil, "about": nil, "timeout": nil,
}

// syncParts say where a new sync's relations and dbs come from: relgroup=
// or a tables= list, and dbgroup= or a dbs= list.
type syncParts struct {
	relgroup, tables string // as hasRelGroup says
	dbgroup, dbs     string // as hasDBGroup says
	hasRelGroup      bool
	hasDBGroup       bool
}

// newSync is the sync that mcp add sync NAME key=value ... describes, with
// its options set, and where its relations and dbs come from.
func newSync(name string, kv kvArgs) (catalog.Sync, syncParts, error) {
	s := catalog.NewSync(name)
	if err := catalog.ValidName(catalog.KindSync, s.Name); err != nil {
		return catalog.Sync{}, syncParts{}, err
	}
	if err := applySyncOptions(&s, kv); err != nil {
		return catalog.Sync{}, syncParts{}, err
	}
	var p syncParts
	var hasTables, hasDBs bool
	p.relgroup, p.hasRelGroup = kv.get("relgroup")
	p.tables, hasTables = kv.get("tables")
	p.dbs, hasDBs = kv.get("dbs")
	p.dbgroup, p.hasDBGroup = kv.get("dbgroup")
	switch {
	case p.hasRelGroup == hasTables:
		return catalog.Sync{}, syncParts{}, usagef("sync %s: give relgroup=R or tables=T1,T2 (one of them)", s.Name)
	case hasDBs == p.hasDBGroup:
		return catalog.Sync{}, syncParts{}, usagef("sync %s: give dbs=A:source,B:target or dbgroup=G (one of them)", s.Name)
	}
	return s, p, nil
}

// customCodeUpdateKeys are the keys of mcp update customcode: where it is
// attached does not change.
var customCodeUpdateKeys = map[string][]string{
	"plugin": {"src_code", "path"}, "whenrun": nil, "priority": nil, "status": nil, "about": nil, "timeout": nil,
}

// pluginChecksum is catalog.PluginChecksum: how applyCustomCode learns the
// absolute path and sha256 of plugin=PATH.
type pluginChecksum func(path string) (abs, sum string, err error)

// applyCustomCode sets plugin (with its checksum, from checksum), whenrun,
// priority, status, about, timeout and the plugin's settings from kv.
func applyCustomCode(cc *catalog.CustomCode, kv kvArgs, checksum pluginChecksum) error {
	if len(kv.extra) > 0 {
		if cc.Settings == nil {
			cc.Settings = map[string]string{}
		}
		for k, v := range kv.extra {
			if v == "" {
				delete(cc.Settings, k) // key= removes a setting
			} else {
				cc.Settings[k] = v
			}
		}
	}
	if v, ok := kv.get("timeout"); ok {
		d, err := catalog.ParseDuration(v)
		if err != nil || d <= 0 {
			return catalog.Invalidf("customcode %s: timeout=%q is not a duration such as 30s or 2m", cc.Name, v)
		}
		cc.Timeout = d
	}
	if v, ok := kv.get("plugin"); ok {
		abs, sum, err := checksum(v)
		if err != nil {
			return fmt.Errorf("customcode %s: %w", cc.Name, err)
		}
		cc.Plugin, cc.SHA256 = abs, sum
	}
	if v, ok := kv.get("whenrun"); ok {
		h, err := catalog.ParseHook(v)
		if err != nil {
			return fmt.Errorf("customcode %s: %w", cc.Name, err)
		}
		cc.WhenRun = h
	}
	if v, ok := kv.get("priority"); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			return catalog.Invalidf("customcode %s: priority=%q is not a whole number", cc.Name, v)
		}
		cc.Priority = n
	}
	if v, ok := kv.get("status"); ok {
		v = strings.ToLower(v)
		if v != catalog.StatusActive && v != catalog.StatusInactive {
			return catalog.Invalidf("customcode %s: status=%q is not valid: use active or inactive", cc.Name, v)
		}
		cc.Status = v
	}
	if v, ok := kv.get("about"); ok {
		cc.About = v
	}
	return nil
}

// attachment says where a new customcode runs: on sync=S, or on table=T
// (of db=D when given).
type attachment struct {
	onSync          bool
	sync, table, db string
}

// where names the attachment for mcp's messages.
func (a attachment) where() string {
	if a.onSync {
		return "sync " + a.sync
	}
	return "table " + a.table
}

// newCustomCode is the customcode that mcp add customcode NAME key=value ...
// describes, and where it runs; checksum as for applyCustomCode.
func newCustomCode(name string, kv kvArgs, checksum pluginChecksum) (catalog.CustomCode, attachment, error) {
	cc := catalog.CustomCode{Name: name, Status: catalog.StatusActive}
	if err := catalog.ValidName(catalog.KindCustomCode, cc.Name); err != nil {
		return catalog.CustomCode{}, attachment{}, err
	}
	if err := applyCustomCode(&cc, kv, checksum); err != nil {
		return catalog.CustomCode{}, attachment{}, err
	}
	if cc.Plugin == "" || cc.WhenRun == "" {
		return catalog.CustomCode{}, attachment{}, usagef("customcode %s: plugin=PATH and whenrun=HOOK are required", cc.Name)
	}
	var a attachment
	var onTable bool
	a.sync, a.onSync = kv.get("sync")
	a.table, onTable = kv.get("table")
	if a.onSync == onTable {
		return catalog.CustomCode{}, attachment{}, usagef("customcode %s: attach it to sync=S or to table=SCHEMA.T (one of them)", cc.Name)
	}
	a.db, _ = kv.get("db")
	return cc, a, nil
}
