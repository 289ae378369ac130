package pluginhost

import (
	"encoding/hex"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/gobucardo/gobucardo/pkg/pg"
	"github.com/gobucardo/gobucardo/pkg/replicate"
	"github.com/gobucardo/gobucardo/pkg/sdk"
)

// This file translates between the run's view of custom code (package
// replicate: rows as PostgreSQL text) and the plugin SDK's (typed values).

// valueFromText is a column's text output (in the run's session settings:
// UTC, ISO dates, hex bytea) as an sdk.Value of its kind.
func valueFromText(typ string, text *string) sdk.Value {
	if text == nil {
		return sdk.Null()
	}
	s := *text
	switch pg.BaseType(typ) {
	case "boolean":
		return sdk.Bool(s == "t" || s == "true") // the output function says t, a cast to text true
	case "smallint", "integer", "bigint":
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return sdk.Int(i)
		}
	case "real", "double precision":
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return sdk.Float(f)
		}
	case "numeric":
		return sdk.Numeric(s)
	case "text", "character varying", "character", "name", "citext", `"char"`:
		return sdk.Text(s)
	case "bytea":
		if b, err := hex.DecodeString(strings.TrimPrefix(s, `\x`)); err == nil {
			return sdk.Bytes(b)
		}
	case "timestamp with time zone":
		if t, err := time.Parse("2006-01-02 15:04:05.999999999Z07", s); err == nil {
			return sdk.Time(t)
		}
	case "timestamp without time zone":
		if t, err := time.Parse("2006-01-02 15:04:05.999999999", s); err == nil {
			return sdk.Time(t)
		}
	case "date":
		if t, err := time.Parse("2006-01-02", s); err == nil {
			return sdk.Time(t)
		}
	case "json", "jsonb":
		return sdk.JSON([]byte(s))
	}
	return sdk.Other(typ, s) // and infinity, BC dates, ...
}

// valueText is v as text a PostgreSQL input function takes; nil for NULL.
func valueText(v sdk.Value) *string {
	var s string
	switch v.Kind() {
	case sdk.KindNull:
		return nil
	case sdk.KindBool:
		b, _ := v.Bool()
		s = "f"
		if b {
			s = "t"
		}
	case sdk.KindInt:
		i, _ := v.Int()
		s = strconv.FormatInt(i, 10)
	case sdk.KindFloat:
		f, _ := v.Float()
		switch {
		case math.IsInf(f, 1):
			s = "Infinity"
		case math.IsInf(f, -1):
			s = "-Infinity"
		default:
			s = strconv.FormatFloat(f, 'g', -1, 64) // NaN is "NaN"
		}
	case sdk.KindNumeric:
		s, _ = v.Numeric()
	case sdk.KindText:
		s, _ = v.Text()
	case sdk.KindBytes:
		b, _ := v.Bytes()
		s = `\x` + hex.EncodeToString(b)
	case sdk.KindTime:
		t, _ := v.Time()
		s = t.UTC().Format("2006-01-02 15:04:05.999999999Z07:00")
	case sdk.KindJSON:
		b, _ := v.JSON()
		s = string(b)
	default:
		_, s, _ = v.Other()
	}
	return &s
}

func rowToSDK(r replicate.Row) sdk.Row {
	if r == nil {
		return nil
	}
	out := make(sdk.Row, len(r))
	for i, c := range r {
		out[i] = sdk.Column{Name: c.Name, Type: c.Type, Value: valueFromText(c.Type, c.Value)}
	}
	return out
}

func rowFromSDK(r sdk.Row) replicate.Row {
	if r == nil {
		return nil
	}
	out := make(replicate.Row, len(r))
	for i, c := range r {
		out[i] = replicate.Column{Name: c.Name, Type: c.Type, Value: valueText(c.Value)}
	}
	return out
}

func conflictToSDK(c replicate.ConflictRow) sdk.Conflict {
	out := sdk.Conflict{Sync: c.Sync, Table: c.Table, Key: rowToSDK(c.Key), Previous: rowToSDK(c.Previous)}
	for _, s := range c.Sources {
		out.Sources = append(out.Sources, sdk.SourceRow{DB: s.DB, Row: rowToSDK(s.Row), Deleted: s.Deleted, ChangedAt: s.ChangedAt})
	}
	return out
}

// resolutionFromSDK maps a checked answer; an action it does not know
// becomes the zero Resolution, which the run refuses.
func resolutionFromSDK(r sdk.Resolution) replicate.Resolution {
	out := replicate.Resolution{DB: r.DB, Row: rowFromSDK(r.Row), Message: r.Message}
	switch r.Action {
	case sdk.ActionWinner:
		out.Action = replicate.ResolveWinner
	case sdk.ActionMerge:
		out.Action = replicate.ResolveMerge
	case sdk.ActionSkip:
		out.Action = replicate.ResolveSkip
	case sdk.ActionAbort:
		out.Action = replicate.ResolveAbort
	}
	return out
}

func exceptionToSDK(e replicate.Exception) sdk.Exception {
	out := sdk.Exception{Sync: e.Sync, Table: e.Table, DB: e.DB, SQLState: e.SQLState, Message: e.Message,
		Detail: e.Detail, Constraint: e.Constraint, Attempt: e.Attempt}
	for _, k := range e.Keys {
		out.Keys = append(out.Keys, rowToSDK(k))
	}
	return out
}

// exceptionDecisionFromSDK maps a checked answer; anything but retry and
// skip_rows fails the run.
func exceptionDecisionFromSDK(d sdk.ExceptionDecision) replicate.ExceptionDecision {
	out := replicate.ExceptionDecision{Action: replicate.ExceptionFail, Message: d.Message}
	switch d.Action {
	case sdk.ActionRetry:
		out.Action = replicate.ExceptionRetry
	case sdk.ActionSkipRows:
		out.Action = replicate.ExceptionSkipRows
	}
	return out
}

func hookEventToSDK(e replicate.HookEvent) sdk.HookEvent {
	out := sdk.HookEvent{Sync: e.Sync, Hook: sdk.HookPoint(e.Hook), Attempt: e.Attempt}
	if r := e.Result; r != nil {
		out.Result = &sdk.RunSummary{Deletes: r.Deletes, Inserts: r.Inserts, Conflicts: r.Conflicts, Error: r.Error}
	}
	return out
}

func hookDecisionFromSDK(d sdk.HookDecision) replicate.HookDecision {
	return replicate.HookDecision{Cancel: d.Action == sdk.ActionCancel, Reason: d.Reason}
}
