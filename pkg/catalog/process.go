package catalog

// The roles of Process, one per kind of gobucardo process.
const (
	ProcessRoleMCP        = "mcp"
	ProcessRoleController = "controller"
	ProcessRoleKid        = "kid"
	ProcessRolePlugin     = "plugin"
)

// The states of Process: what a process is doing (its Detail says more).
const (
	// ProcessStarting: the controller has not read its sync yet.
	ProcessStarting = "starting"
	// ProcessRunning: a run is in progress (the MCP: it serves).
	ProcessRunning = "running"
	// ProcessIdle: nothing to do until a kick or a timer.
	ProcessIdle = "idle"
	// ProcessPaused: the sync is paused (Detail: why).
	ProcessPaused = "paused"
	// ProcessInactive: the sync's status is inactive.
	ProcessInactive = "inactive"
	// ProcessWaiting: the controller cannot run yet (the catalog is not
	// reachable, or a source db is inactive).
	ProcessWaiting = "waiting"
	// ProcessSettling: the controller waits for the transactions in
	// progress when it armed autokick before its last run.
	ProcessSettling = "settling"
	// ProcessRetrying: the last run failed; the controller tries again.
	ProcessRetrying = "retrying"
	// ProcessStopping: the controller is stopping its kid and exiting.
	ProcessStopping = "stopping"
	// ProcessReady: a plugin is started and serves its kid.
	ProcessReady = "ready"
)
