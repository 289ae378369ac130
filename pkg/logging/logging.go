package logging

import (
	"encoding/json"
	"io"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Field names shared by every process.
const (
	FieldRole  = "role"
	FieldSync  = "sync"
	FieldDB    = "db"
	FieldTable = "table"
	FieldPID   = "pid"
	FieldRun   = "run"
)

// New returns a JSON logger writing to w at level, with the role field set.
func New(w io.Writer, level zapcore.LevelEnabler, role string) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "ts"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(w), level)
	return zap.New(core).With(zap.String(FieldRole, role))
}

// NewConsole returns a human-readable logger for interactive commands.
func NewConsole(w io.Writer, level zapcore.Level) *zap.Logger {
	enc := zap.NewDevelopmentEncoderConfig()
	enc.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(w), level)
	return zap.New(core)
}

// Stderr is the process's standard error, locked, so that its own log
// entries and the lines it forwards from children never interleave.
var Stderr = zapcore.Lock(zapcore.AddSync(os.Stderr))

// Forward returns a function for a child's stderr lines (see proc.Spec):
// JSON log entries, which carry the child's own role, sync and pid fields, are
// written to w as they are; any other line (a panic, a stray print) is logged
// through child, a logger carrying the child's identity.
func Forward(w zapcore.WriteSyncer, child *zap.Logger) func(line []byte) {
	return func(line []byte) {
		if len(line) == 0 {
			return
		}
		if line[0] == '{' && json.Valid(line) {
			buf := make([]byte, 0, len(line)+1)
			_, _ = w.Write(append(append(buf, line...), '\n'))
			return
		}
		child.Info(string(line))
	}
}
