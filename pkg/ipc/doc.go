// Package ipc runs gRPC between a parent and its child process over the child's stdin and stdout.
//
// The parent is the gRPC client and the child the server. The parent starts the child with Start, which
// returns a *grpc.ClientConn over the pipes. The child calls Claim as its very first action, then Serve:
//
//	conn, err := ipc.Claim() // from here on fd 1 and os.Stdout write to stderr
//	...
//	srv := ipc.NewServer()
//	kidpb.RegisterKidServer(srv, k)
//	return ipc.Serve(conn, srv) // nil once the parent closes the pipe or dies
//
// Claim moves the transport to fresh file descriptors, points fd 1 (os.Stdout) at stderr so that no
// stray print can corrupt the stream, and fd 0 (os.Stdin) at /dev/null. Everything the child writes on
// stdout or stderr thus reaches the parent's proc.Spec.Stderr callback.
//
// The transport is a private pair of pipes, so it carries no TLS. There is exactly one connection: if
// it breaks (the child died), the client does not redial, and calls fail with codes.Unavailable. The
// child sees EOF on its stdin when the parent closes the connection (Child.Close) or dies, and Serve
// returns nil; the child should then exit.
package ipc
