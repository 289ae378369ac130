// Command kid is one of gobucardo's daemon processes, started by the MCP.
// For now it only prints its version.
package main

import (
	"fmt"
	"os"

	"github.com/gobucardo/gobucardo/pkg/version"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "--version" || os.Args[1] == "version" || os.Args[1] == "-v") {
		fmt.Println("kid version " + version.Version)
		return
	}
	fmt.Fprintln(os.Stderr, "kid: not yet implemented; started by mcp run in a later release. Try --version.")
	os.Exit(2)
}
