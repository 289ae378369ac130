package logging

import (
	"fmt"
	"io"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"
)

// HCLog returns an hclog.Logger, as go-plugin wants, whose entries go to
// log: go-plugin logs through it what it does and what its plugins write in
// their own log, each entry at its level with its key/value pairs as fields.
func HCLog(log *zap.Logger, name string) hclog.Logger {
	l := hclog.NewInterceptLogger(&hclog.LoggerOptions{Name: name, Output: io.Discard, Level: hclog.Trace})
	l.RegisterSink(sink{log})
	return l
}

type sink struct{ log *zap.Logger }

// Accept logs one hclog entry.
func (s sink) Accept(name string, level hclog.Level, msg string, args ...any) {
	fields := make([]zap.Field, 0, len(args)/2+1)
	if name != "" {
		fields = append(fields, zap.String("logger", name))
	}
	for i := 0; i+1 < len(args); i += 2 {
		fields = append(fields, zap.Any(fmt.Sprint(args[i]), args[i+1]))
	}
	switch {
	case level >= hclog.Error:
		s.log.Error(msg, fields...)
	case level == hclog.Warn:
		s.log.Warn(msg, fields...)
	case level == hclog.Info:
		s.log.Info(msg, fields...)
	default:
		s.log.Debug(msg, fields...)
	}
}
