//go:build !linux

package proxy

import "net"

// alive cannot peek without blocking here: trust the connection, and let
// the stale-connection retry recover.
func alive(net.Conn) bool { return true }
