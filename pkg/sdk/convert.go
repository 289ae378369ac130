package sdk

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/gobucardo/gobucardo/pkg/sdk/internal/handlerpb"
)

// Conversions between the SDK's types and their wire form. Encoding cannot
// fail; decoding fails on what no SDK would send (a value without a kind, a
// time out of range), since the other side may be any program.

// valid makes s valid UTF-8, as proto3 strings must be: messages may quote
// values from a database whose text is not.
func valid(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

func valueToPB(v Value) *pb.Value {
	switch v.kind {
	case KindBool:
		return &pb.Value{Kind: &pb.Value_BoolValue{BoolValue: v.b}}
	case KindInt:
		return &pb.Value{Kind: &pb.Value_IntValue{IntValue: v.i}}
	case KindFloat:
		return &pb.Value{Kind: &pb.Value_FloatValue{FloatValue: v.f}}
	case KindNumeric:
		return &pb.Value{Kind: &pb.Value_NumericValue{NumericValue: v.s}}
	case KindText:
		return &pb.Value{Kind: &pb.Value_TextValue{TextValue: []byte(v.s)}}
	case KindBytes:
		return &pb.Value{Kind: &pb.Value_BytesValue{BytesValue: v.raw}}
	case KindTime:
		return &pb.Value{Kind: &pb.Value_TimeValue{TimeValue: timestamppb.New(v.t)}}
	case KindJSON:
		return &pb.Value{Kind: &pb.Value_JsonValue{JsonValue: v.raw}}
	case KindOther:
		return &pb.Value{Kind: &pb.Value_OtherValue{OtherValue: &pb.Value_Other{Type: v.typ, Text: []byte(v.s)}}}
	default:
		return &pb.Value{Kind: &pb.Value_NullValue{NullValue: &pb.Value_Null{}}}
	}
}

func valueFromPB(p *pb.Value) (Value, error) {
	switch k := p.GetKind().(type) {
	case *pb.Value_NullValue:
		return Null(), nil
	case *pb.Value_BoolValue:
		return Bool(k.BoolValue), nil
	case *pb.Value_IntValue:
		return Int(k.IntValue), nil
	case *pb.Value_FloatValue:
		return Float(k.FloatValue), nil
	case *pb.Value_NumericValue:
		return Numeric(k.NumericValue), nil
	case *pb.Value_TextValue:
		return Text(string(k.TextValue)), nil
	case *pb.Value_BytesValue:
		return Bytes(k.BytesValue), nil
	case *pb.Value_TimeValue:
		t, err := timeFromPB(k.TimeValue)
		return Time(t), err
	case *pb.Value_JsonValue:
		return JSON(k.JsonValue), nil
	case *pb.Value_OtherValue:
		return Other(k.OtherValue.GetType(), string(k.OtherValue.GetText())), nil
	default:
		return Value{}, fmt.Errorf("value without a kind")
	}
}

func timeToPB(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func timeFromPB(ts *timestamppb.Timestamp) (time.Time, error) {
	if ts == nil {
		return time.Time{}, nil
	}
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, err
	}
	return ts.AsTime(), nil
}

// rowToPB encodes r; a nil Row becomes a nil message ("no row"), an empty
// one an empty message.
func rowToPB(r Row) *pb.Row {
	if r == nil {
		return nil
	}
	out := &pb.Row{Columns: make([]*pb.Column, len(r))}
	for i, c := range r {
		out.Columns[i] = &pb.Column{Name: c.Name, Type: c.Type, Value: valueToPB(c.Value)}
	}
	return out
}

func rowFromPB(p *pb.Row) (Row, error) {
	if p == nil {
		return nil, nil
	}
	out := make(Row, len(p.Columns))
	for i, c := range p.Columns {
		v, err := valueFromPB(c.GetValue())
		if err != nil {
			return nil, fmt.Errorf("column %q: %w", c.GetName(), err)
		}
		out[i] = Column{Name: c.GetName(), Type: c.GetType(), Value: v}
	}
	return out, nil
}

func conflictToPB(c Conflict) *pb.Conflict {
	out := &pb.Conflict{
		Sync:     c.Sync,
		Table:    c.Table,
		Key:      rowToPB(c.Key),
		Sources:  make([]*pb.SourceRow, len(c.Sources)),
		Previous: rowToPB(c.Previous),
	}
	for i, s := range c.Sources {
		out.Sources[i] = &pb.SourceRow{
			Db:        s.DB,
			Row:       rowToPB(s.Row),
			Deleted:   s.Deleted,
			ChangedAt: timeToPB(s.ChangedAt),
			Before:    rowToPB(s.Before),
		}
	}
	return out
}

func conflictFromPB(p *pb.Conflict) (Conflict, error) {
	c := Conflict{Sync: p.GetSync(), Table: p.GetTable()}
	var err error
	if c.Key, err = rowFromPB(p.GetKey()); err != nil {
		return c, fmt.Errorf("key: %w", err)
	}
	if c.Previous, err = rowFromPB(p.GetPrevious()); err != nil {
		return c, fmt.Errorf("previous row: %w", err)
	}
	c.Sources = make([]SourceRow, len(p.GetSources()))
	for i, s := range p.GetSources() {
		src := SourceRow{DB: s.GetDb(), Deleted: s.GetDeleted()}
		if src.Row, err = rowFromPB(s.GetRow()); err != nil {
			return c, fmt.Errorf("row of %s: %w", src.DB, err)
		}
		if src.Before, err = rowFromPB(s.GetBefore()); err != nil {
			return c, fmt.Errorf("before row of %s: %w", src.DB, err)
		}
		if src.ChangedAt, err = timeFromPB(s.GetChangedAt()); err != nil {
			return c, fmt.Errorf("changed_at of %s: %w", src.DB, err)
		}
		if src.Deleted {
			src.Row = nil
		}
		c.Sources[i] = src
	}
	return c, nil
}

func resolutionToPB(r Resolution) *pb.ResolveReply {
	switch r.Action {
	case ActionWinner:
		return &pb.ResolveReply{Outcome: &pb.ResolveReply_Winner_{Winner: &pb.ResolveReply_Winner{Db: r.DB}}}
	case ActionMerge:
		// A Merge of a nil row still sends a row, so that the host can say
		// what is wrong with it.
		row := rowToPB(r.Row)
		if row == nil {
			row = &pb.Row{}
		}
		return &pb.ResolveReply{Outcome: &pb.ResolveReply_Merge_{Merge: &pb.ResolveReply_Merge{Row: row}}}
	case ActionSkip:
		return &pb.ResolveReply{Outcome: &pb.ResolveReply_Skip_{Skip: &pb.ResolveReply_Skip{Reason: valid(r.Message)}}}
	case ActionAbort:
		return &pb.ResolveReply{Outcome: &pb.ResolveReply_Abort_{Abort: &pb.ResolveReply_Abort{Message: valid(r.Message)}}}
	default:
		return &pb.ResolveReply{} // no answer: the host says so
	}
}

func exceptionToPB(e Exception) *pb.Exception {
	out := &pb.Exception{
		Sync:       e.Sync,
		Table:      e.Table,
		Db:         e.DB,
		Sqlstate:   e.SQLState,
		Message:    valid(e.Message),
		Detail:     valid(e.Detail),
		Constraint: valid(e.Constraint),
		Keys:       make([]*pb.Row, len(e.Keys)),
		Attempt:    int32(e.Attempt),
	}
	for i, k := range e.Keys {
		out.Keys[i] = rowToPB(k)
		if out.Keys[i] == nil {
			out.Keys[i] = &pb.Row{}
		}
	}
	return out
}

func exceptionFromPB(p *pb.Exception) (Exception, error) {
	e := Exception{
		Sync:       p.GetSync(),
		Table:      p.GetTable(),
		DB:         p.GetDb(),
		SQLState:   p.GetSqlstate(),
		Message:    p.GetMessage(),
		Detail:     p.GetDetail(),
		Constraint: p.GetConstraint(),
		Attempt:    int(p.GetAttempt()),
	}
	if len(p.GetKeys()) > 0 {
		e.Keys = make([]Row, len(p.GetKeys()))
	}
	for i, k := range p.GetKeys() {
		r, err := rowFromPB(k)
		if err != nil {
			return e, fmt.Errorf("key %d: %w", i+1, err)
		}
		e.Keys[i] = r
	}
	return e, nil
}

func exceptionDecisionToPB(d ExceptionDecision) *pb.HandleReply {
	switch d.Action {
	case ActionRetry:
		return &pb.HandleReply{Outcome: &pb.HandleReply_Retry_{Retry: &pb.HandleReply_Retry{Message: valid(d.Message)}}}
	case ActionSkipRows:
		return &pb.HandleReply{Outcome: &pb.HandleReply_SkipRows_{SkipRows: &pb.HandleReply_SkipRows{Message: valid(d.Message)}}}
	case ActionFail:
		return &pb.HandleReply{Outcome: &pb.HandleReply_Fail_{Fail: &pb.HandleReply_Fail{Message: valid(d.Message)}}}
	default:
		return &pb.HandleReply{}
	}
}

func hookEventToPB(e HookEvent) *pb.HookEvent {
	out := &pb.HookEvent{Sync: e.Sync, Hook: string(e.Hook), Attempt: int32(e.Attempt)}
	if e.Result != nil {
		out.Result = &pb.RunSummary{
			Deletes:   e.Result.Deletes,
			Inserts:   e.Result.Inserts,
			Conflicts: e.Result.Conflicts,
			Error:     valid(e.Result.Error),
		}
	}
	return out
}

func hookEventFromPB(p *pb.HookEvent) HookEvent {
	e := HookEvent{Sync: p.GetSync(), Hook: HookPoint(p.GetHook()), Attempt: int(p.GetAttempt())}
	if r := p.GetResult(); r != nil {
		e.Result = &RunSummary{Deletes: r.GetDeletes(), Inserts: r.GetInserts(), Conflicts: r.GetConflicts(), Error: r.GetError()}
	}
	return e
}

func hookDecisionToPB(d HookDecision) *pb.HookReply {
	switch d.Action {
	case ActionContinue:
		return &pb.HookReply{Outcome: &pb.HookReply_ContinueRun{ContinueRun: &pb.HookReply_Continue{}}}
	case ActionCancel:
		return &pb.HookReply{Outcome: &pb.HookReply_Cancel_{Cancel: &pb.HookReply_Cancel{Reason: valid(d.Reason)}}}
	default:
		return &pb.HookReply{}
	}
}
