package main

import (
	"strings"
	"testing"

	"github.com/gobucardo/gobucardo/pkg/sdk"
	"github.com/gobucardo/gobucardo/pkg/sdk/sdktest"
)

func TestHandle(t *testing.T) {
	keys := []sdk.Row{sdktest.Row("id", int64(7)), sdktest.Row("id", int64(8))}
	tests := []struct {
		name   string
		e      sdk.Exception
		want   sdk.ExceptionAction
		msgHas string
	}{
		{
			name: "unique violation parks the rows",
			e: sdk.Exception{Sync: "s1", Table: "public.item", DB: "B", SQLState: "23505",
				Message: `duplicate key value violates unique constraint "item_sku_key"`, Constraint: "item_sku_key",
				Detail: "Key (sku)=(X1) already exists.", Keys: keys, Attempt: 1},
			want:   sdk.ActionSkipRows,
			msgHas: "parked 2 row(s) of public.item on B",
		},
		{
			name:   "unique violation without rows fails",
			e:      sdk.Exception{Table: "public.item", SQLState: "23505", Message: "duplicate key"},
			want:   sdk.ActionFail,
			msgHas: "no rows to park",
		},
		{
			name:   "foreign key violation fails",
			e:      sdk.Exception{Table: "public.item", SQLState: "23503", Message: "violates foreign key", Keys: keys},
			want:   sdk.ActionFail,
			msgHas: "SQLSTATE 23503",
		},
		{
			name:   "serialization failure fails",
			e:      sdk.Exception{Table: "public.item", SQLState: "40001", Message: "could not serialize access", Attempt: 2},
			want:   sdk.ActionFail,
			msgHas: "not a unique violation",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := sdktest.Handle(t, parkUnique{}, tt.e)
			if got.Action != tt.want || !strings.Contains(got.Message, tt.msgHas) {
				t.Fatalf("got %v %q, want %v with %q", got.Action, got.Message, tt.want, tt.msgHas)
			}
		})
	}
}

func TestTakesNoSettings(t *testing.T) {
	c := sdktest.Start(t, sdk.Plugin{Exception: parkUnique{}})
	if err := c.Configure(sdktest.Context(t), map[string]string{"x": "1"}); err == nil {
		t.Fatal("settings accepted by a plugin that takes none")
	}
	if err := c.Configure(sdktest.Context(t), nil); err != nil {
		t.Fatalf("no settings: %v", err)
	}
}
