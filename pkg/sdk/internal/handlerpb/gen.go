// Package handlerpb is the generated wire form of the plugin protocol
// (gobucardo.handler.v1). Only package sdk uses it.
package handlerpb

//go:generate sh -c "cd ../../../.. && PATH=/work/main/bin/tools:$PATH protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative pkg/sdk/internal/handlerpb/handler.proto"
