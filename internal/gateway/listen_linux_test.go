package gateway

import (
	"net"
	"syscall"
	"testing"
)

// TestListenWithoutKeepAlive: the listeners accept connections without
// TCP keep-alive probes (four system calls per connection fewer); the
// traffic server turns them on for a connection that waits long.
func TestListenWithoutKeepAlive(t *testing.T) {
	ln, err := listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	raw, err := a.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	v := -1
	if cerr := raw.Control(func(fd uintptr) {
		v, err = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
	}); cerr != nil || err != nil {
		t.Fatal(cerr, err)
	}
	if v != 0 {
		t.Errorf("SO_KEEPALIVE %d on an accepted connection, want 0", v)
	}
}
