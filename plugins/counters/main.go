// Command counters is a gobucardo conflict handler for counter columns
// (stock levels, balances, hit counts) changed on several sources at once:
// instead of one side's value winning, every side's change is kept. With a
// common base value b, source A at a and source B at b', the merged value is
// b + (a - b) + (b' - b).
//
// Settings:
//
//	columns=a,b      the counter columns (required): integer, float or numeric
//	nobase=abort     what to do when no base value is known (the default)
//	nobase=latest    ... or let the most recently changed source win whole
//
// The base of a source's change is the row as it was before it
// (sdk.SourceRow.Before) when the host knows it, else the row as it was at the
// previous run (sdk.Conflict.Previous); when neither is known the change
// cannot be told from the total and nobase decides. A NULL counter counts as
// 0. Columns other than the counters are taken from the source that changed
// the row last. If any source deleted the row there is nothing to add to: the
// source that changed the row last wins, delete or not.
//
// Register it:
//
//	go build -o /usr/local/lib/gobucardo/counters ./plugins/counters
//	mcp add customcode stock plugin=/usr/local/lib/gobucardo/counters whenrun=conflict table=public.stock columns=on_hand,reserved
package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/gobucardo/gobucardo/pkg/sdk"
)

func main() {
	sdk.Serve(sdk.Plugin{Name: "counters", Conflict: &counters{}})
}

type config struct {
	columns []string
	latest  bool // nobase=latest
}

// counters merges counter columns.
type counters struct {
	cfg atomic.Pointer[config]
}

// Configure takes columns=a,b and nobase=abort|latest.
func (h *counters) Configure(_ context.Context, settings map[string]string) error {
	var cfg config
	for k, v := range settings {
		switch k {
		case "columns":
			for _, c := range strings.Split(v, ",") {
				if c = strings.TrimSpace(c); c != "" {
					cfg.columns = append(cfg.columns, c)
				}
			}
		case "nobase":
			switch v {
			case "abort":
			case "latest":
				cfg.latest = true
			default:
				return fmt.Errorf("nobase=%q: use nobase=abort or nobase=latest", v)
			}
		default:
			return fmt.Errorf("unknown setting %q: counters takes columns=a,b and nobase=abort|latest", k)
		}
	}
	if len(cfg.columns) == 0 {
		return fmt.Errorf("counters needs columns=a,b, the counter columns to merge")
	}
	h.cfg.Store(&cfg)
	return nil
}

// Resolve merges the counters of c.
func (h *counters) Resolve(_ context.Context, c sdk.Conflict) (sdk.Resolution, error) {
	cfg := h.cfg.Load()
	if cfg == nil {
		return sdk.Abort("counters: no columns configured (register the customcode with columns=a,b)"), nil
	}
	return merge(c, *cfg), nil
}

// merge adds up each source's change of the counter columns.
func merge(c sdk.Conflict, cfg config) sdk.Resolution {
	latest := latestSource(c)
	for _, s := range c.Sources {
		if s.Deleted {
			return sdk.Winner(latest.DB)
		}
	}
	row := latest.Row.Clone()
	for _, col := range cfg.columns {
		if _, ok := c.Key.Get(col); ok {
			return sdk.Abort(fmt.Sprintf("counters: %s: %q is a key column, not a counter", c.Table, col))
		}
		total, err := sum(c, col)
		if errors.Is(err, errNoBase) && cfg.latest {
			return sdk.Winner(latest.DB)
		}
		if err != nil {
			return sdk.Abort(fmt.Sprintf("counters: %s.%s: %v", c.Table, col, err))
		}
		row = row.With(col, total)
	}
	return sdk.Merge(row)
}

var errNoBase = errors.New("no base value known (neither the row before each change nor at the previous run): " +
	"register with nobase=latest to let the latest change win in that case")

// sum returns base + the sum of every source's change of col: with b the
// common base (Previous, else the first source's base) and b_i the base of
// source i's change (its Before, else Previous), b + Σ (v_i - b_i).
func sum(c sdk.Conflict, col string) (sdk.Value, error) {
	var common *sdk.Value
	if c.Previous != nil {
		v, ok := c.Previous.Get(col)
		if !ok {
			return sdk.Value{}, fmt.Errorf("no such column")
		}
		common = &v
	}
	var values, bases []sdk.Value
	for _, s := range c.Sources {
		v, ok := s.Row.Get(col)
		if !ok {
			return sdk.Value{}, fmt.Errorf("no such column on %s", s.DB)
		}
		switch b, ok := s.Before.Get(col); {
		case ok:
			bases = append(bases, b)
		case common != nil:
			bases = append(bases, *common)
		default:
			return sdk.Value{}, errNoBase
		}
		values = append(values, v)
	}
	if common == nil {
		common = &bases[0]
	}
	return add(*common, values, bases)
}

// add returns base + Σ (values[i] - bases[i]), computed exactly, in the
// widest kind of its terms: bigint (failing when the total does not fit),
// double precision, or numeric with the largest scale of its terms. NULL
// counts as 0.
func add(base sdk.Value, values, bases []sdk.Value) (sdk.Value, error) {
	kind, scale, total := sdk.KindInt, 0, new(big.Rat)
	term := func(v sdk.Value, negate bool) error {
		r, s, err := ratOf(v)
		if err != nil {
			return err
		}
		if k := v.Kind(); k > kind { // KindInt < KindFloat < KindNumeric
			kind = k
		}
		scale = max(scale, s)
		if negate {
			r.Neg(r)
		}
		total.Add(total, r)
		return nil
	}
	if err := term(base, false); err != nil {
		return sdk.Value{}, err
	}
	for i := range values {
		if err := term(values[i], false); err != nil {
			return sdk.Value{}, err
		}
		if err := term(bases[i], true); err != nil {
			return sdk.Value{}, err
		}
	}
	switch kind {
	case sdk.KindInt:
		if !total.IsInt() || !total.Num().IsInt64() {
			return sdk.Value{}, fmt.Errorf("the total %s does not fit a bigint", total.RatString())
		}
		return sdk.Int(total.Num().Int64()), nil
	case sdk.KindFloat:
		f, _ := total.Float64()
		return sdk.Float(f), nil
	default:
		return sdk.Numeric(total.FloatString(scale)), nil
	}
}

// ratOf returns a counter value as an exact rational, with its number of
// decimals when it is a numeric.
func ratOf(v sdk.Value) (*big.Rat, int, error) {
	switch v.Kind() {
	case sdk.KindNull:
		return new(big.Rat), 0, nil
	case sdk.KindInt:
		i, _ := v.Int()
		return new(big.Rat).SetInt64(i), 0, nil
	case sdk.KindFloat:
		f, _ := v.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, 0, fmt.Errorf("cannot add %v", f)
		}
		return new(big.Rat).SetFloat64(f), 0, nil
	case sdk.KindNumeric:
		s, _ := v.Numeric()
		s = strings.TrimSpace(s)
		r, ok := new(big.Rat).SetString(s)
		if !ok || strings.ContainsAny(s, "/eE") {
			return nil, 0, fmt.Errorf("cannot add numeric %q", s)
		}
		scale := 0
		if i := strings.IndexByte(s, '.'); i >= 0 {
			scale = len(s) - i - 1
		}
		return r, scale, nil
	default:
		return nil, 0, fmt.Errorf("%s value %s is not a number", v.Kind(), v)
	}
}

// latestSource returns the source that changed the row last (the first db
// name on a tie).
func latestSource(c sdk.Conflict) sdk.SourceRow {
	sources := append([]sdk.SourceRow(nil), c.Sources...)
	sort.SliceStable(sources, func(i, j int) bool {
		if !sources[i].ChangedAt.Equal(sources[j].ChangedAt) {
			return sources[i].ChangedAt.After(sources[j].ChangedAt)
		}
		return sources[i].DB < sources[j].DB
	})
	return sources[0]
}
