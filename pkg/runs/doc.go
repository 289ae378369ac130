// Package runs is what every caller of a run shares, whoever runs it (the
// kid for its controller, or mcp sync run in the foreground): the outcome
// read from a run's error (Classify), the record of the run's end built
// from it (End, recorded by catalog.FinishRun), and the sink that records
// a run's conflicts and parked rows in the main database as the run meets
// them (Sink).
package runs
