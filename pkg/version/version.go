// Package version holds the version of the gobucardo binaries, set at build
// time with -ldflags "-X github.com/gobucardo/gobucardo/pkg/version.Version=...".
package version

// Version is the release of this build.
var Version = "0.1.0-dev"
