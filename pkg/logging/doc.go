// Package logging builds the zap loggers of gobucardo's processes and names
// the fields every process logs with, so that logs from the MCP,
// controllers, kids and plugins read as one stream.
package logging
