package proc

import (
	"os"
	"testing"
	"time"
)

func TestUsageSelf(t *testing.T) {
	cpu, rss, err := Usage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if rss <= 0 || cpu < 0 {
		t.Errorf("Usage = %v, %d bytes; want rss > 0", cpu, rss)
	}
}

func TestUsageMissing(t *testing.T) {
	if _, _, err := Usage(1 << 30); err == nil { // above pid_max
		t.Error("Usage of a missing pid succeeded")
	}
}

func TestParseStat(t *testing.T) {
	const tail = " S 1 2 3 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 5 1000 200"
	tests := []struct {
		name    string
		stat    string
		want    time.Duration
		wantErr bool
	}{
		{"plain", "42 (kid)" + tail, 3 * time.Second, false},
		{"comm with spaces and parens", "42 (a) b (c))" + tail, 3 * time.Second, false},
		{"no comm", "42 kid" + tail, 0, true},
		{"short", "42 (kid) S 1 2", 0, true},
		{"bad utime", "42 (kid) S 1 2 3 0 -1 4194560 100 0 0 0 x 50", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.stat))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseStat = %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseStatm(t *testing.T) {
	tests := []struct {
		name    string
		statm   string
		want    int64
		wantErr bool
	}{
		{"plain", "5000 1234 300 10 0 900 0\n", 1234, false},
		{"short", "5000", 0, true},
		{"bad", "5000 x 300", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatm([]byte(tt.statm))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parseStatm = %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}
