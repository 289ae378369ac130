// Package kidcodec is the one translation between replicate's types and
// the kid protocol (gobucardo.kid.v1): the run's specification the
// controller sends (EncodeSync, DecodeSync), and the progress and the
// outcome the kid sends back (EncodeProgress, DecodeProgress,
// EncodeOutcome, DecodeOutcome). What it carries survives the round trip
// whole, and an error decoded is classified (runs.Classify) as the kid
// classified it.
package kidcodec
