package logging

import (
	"io"

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
func New(w io.Writer, level zapcore.Level, role string) *zap.Logger {
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
