package schema

import "testing"

func TestMigrationsNumbered(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no migrations embedded")
	}
	for i, m := range ms {
		if m.Version != i+1 || m.SQL == "" || m.Name == "" {
			t.Errorf("migration %d: %+v", i, m.Version)
		}
	}
	if Latest() != len(ms) {
		t.Errorf("Latest() = %d, want %d", Latest(), len(ms))
	}
}
