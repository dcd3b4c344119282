//go:build !linux

package proxy

import "net"

// sock is the connection's own Read and Write here (see the Linux
// version).
type sock struct{}

func (*sock) init(net.Conn) bool { return false }
func (*sock) ok() bool           { return false }

func (*sock) read(c net.Conn, p []byte) (int, error)  { return c.Read(p) }
func (*sock) write(c net.Conn, b []byte) (int, error) { return c.Write(b) }

func (*sock) writev(c net.Conn, head, b []byte) (int, error) {
	if len(head) > 0 {
		b = append(head[:len(head):len(head)], b...)
	}
	return c.Write(b)
}
