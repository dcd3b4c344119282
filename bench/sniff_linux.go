package main

// The flush clock of scenario 2: a packet socket on the loopback interface
// records, with the kernel's receive timestamp, every TCP segment the
// streaming backend sends, and so when each SSE event left the backend.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// Linux constants the syscall package lacks.
const (
	solPacket         = 263 // SOL_PACKET
	packetStatistics  = 6   // PACKET_STATISTICS
	soRcvBufForce     = 33  // SO_RCVBUFFORCE
	sniffSnapLen      = 1 << 16
	sniffMinIPPayload = 100 // IP total length above which a segment may hold an event
)

// sniffer records when the backend on one port sent each SSE event, keyed by
// completion id. The timestamps are the kernel's (CLOCK_REALTIME), taken as
// loopback hands the segment to the receive path, so they do not depend on
// when the harness gets to read them.
type sniffer struct {
	fd      int
	stopped atomic.Bool
	done    chan struct{}

	mu      sync.Mutex
	flushes map[string][]int64 // guarded by mu: completion id -> send times (Unix ns), in order
	seen    map[uint64]bool    // guarded by mu: events already recorded, by connection and stream offset
	resent  int                // guarded by mu: events seen again (TCP retransmissions)
	err     error              // guarded by mu: why reading stopped early
}

// startSniffer opens an AF_PACKET socket on lo for IPv4 segments sent from
// port. It needs CAP_NET_RAW.
func startSniffer(port int) (*sniffer, error) {
	lo, err := loopbackIndex()
	if err != nil {
		return nil, err
	}
	proto := htons(syscall.ETH_P_IP)
	// A socket bound to one protocol (not ETH_P_ALL) sees each loopback
	// segment once, on its way in.
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM, int(proto))
	if err != nil {
		return nil, fmt.Errorf("packet socket (needs CAP_NET_RAW): %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			syscall.Close(fd)
		}
	}()
	if err := attachFilter(fd, uint32(port)); err != nil {
		return nil, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: proto, Ifindex: lo}); err != nil {
		return nil, fmt.Errorf("bind packet socket to lo: %w", err)
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1); err != nil {
		return nil, fmt.Errorf("SO_TIMESTAMPNS: %w", err)
	}
	if syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, soRcvBufForce, 64<<20) != nil {
		_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<20)
	}
	tv := syscall.Timeval{Usec: 100_000} // wake up to notice stop
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("SO_RCVTIMEO: %w", err)
	}
	s := &sniffer{fd: fd, done: make(chan struct{}), flushes: make(map[string][]int64), seen: make(map[uint64]bool)}
	s.drops() // reset the counters
	ok = true
	go s.loop()
	return s, nil
}

// loopbackIndex returns the index of the loopback interface.
func loopbackIndex() (int, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return 0, fmt.Errorf("list interfaces: %w", err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 {
			return i.Index, nil
		}
	}
	return 0, errors.New("no loopback interface")
}

// attachFilter keeps, in the kernel, only TCP segments from srcPort with
// some payload (IP total length above sniffMinIPPayload): no ACKs, no
// other traffic. Offsets start at the IP header (SOCK_DGRAM).
func attachFilter(fd int, srcPort uint32) error {
	prog := []syscall.SockFilter{
		{Code: syscall.BPF_LD | syscall.BPF_B | syscall.BPF_ABS, K: 9}, // IP protocol
		{Code: syscall.BPF_JMP | syscall.BPF_JEQ | syscall.BPF_K, K: syscall.IPPROTO_TCP, Jf: 6},
		{Code: syscall.BPF_LD | syscall.BPF_H | syscall.BPF_ABS, K: 2}, // IP total length
		{Code: syscall.BPF_JMP | syscall.BPF_JGT | syscall.BPF_K, K: sniffMinIPPayload, Jf: 4},
		{Code: syscall.BPF_LDX | syscall.BPF_B | syscall.BPF_MSH, K: 0}, // X = IP header length
		{Code: syscall.BPF_LD | syscall.BPF_H | syscall.BPF_IND, K: 0},  // TCP source port
		{Code: syscall.BPF_JMP | syscall.BPF_JEQ | syscall.BPF_K, K: srcPort, Jf: 1},
		{Code: syscall.BPF_RET | syscall.BPF_K, K: sniffSnapLen},
		{Code: syscall.BPF_RET | syscall.BPF_K, K: 0},
	}
	fprog := syscall.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, e := syscall.Syscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), syscall.SOL_SOCKET, syscall.SO_ATTACH_FILTER,
		uintptr(unsafe.Pointer(&fprog)), unsafe.Sizeof(fprog), 0)
	if e != 0 {
		return fmt.Errorf("attach packet filter: %w", e)
	}
	return nil
}

// loop reads segments until close.
func (s *sniffer) loop() {
	defer close(s.done)
	buf := make([]byte, sniffSnapLen)
	oob := make([]byte, 256)
	for !s.stopped.Load() {
		n, oobn, _, _, err := syscall.Recvmsg(s.fd, buf, oob, 0)
		if err != nil {
			if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
				continue
			}
			s.mu.Lock()
			s.err = fmt.Errorf("read packet socket: %w", err)
			s.mu.Unlock()
			return
		}
		ts, ok := packetTime(oob[:oobn])
		if !ok {
			continue
		}
		s.record(buf[:n], ts)
	}
}

// packetTime returns the SCM_TIMESTAMPNS timestamp (Unix ns) in oob.
func packetTime(oob []byte) (int64, bool) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, false
	}
	for _, m := range msgs {
		if m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == syscall.SO_TIMESTAMPNS && len(m.Data) >= 16 {
			sec := int64(binary.NativeEndian.Uint64(m.Data[0:8]))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:16]))
			return sec*1e9 + nsec, true
		}
	}
	return 0, false
}

// record notes the send time of every event that starts in the segment
// (an IPv4 packet without link header). A retransmitted event keeps the
// time of its first transmission: the time the backend sent it.
func (s *sniffer) record(pkt []byte, ts int64) {
	seg, ok := tcpSegment(pkt)
	if !ok || len(seg.payload) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range eventStarts(seg.payload) {
		key := uint64(seg.dstPort)<<32 | uint64(seg.seq+uint32(ev.off))
		if s.seen[key] {
			s.resent++
			continue
		}
		s.seen[key] = true
		s.flushes[ev.id] = append(s.flushes[ev.id], ts)
	}
}

// take returns and forgets the send times of id's events.
func (s *sniffer) take(id string) []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.flushes[id]
	delete(s.flushes, id)
	return t
}

// forget drops every recorded time (events of streams nobody matched) and
// returns how many events were retransmitted since the last call.
func (s *sniffer) forget() (resent int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.flushes)
	clear(s.seen)
	resent, s.resent = s.resent, 0
	return resent
}

// drops returns the segments the kernel dropped for lack of buffer since the
// last call (PACKET_STATISTICS resets on read).
func (s *sniffer) drops() int {
	var st [2]uint32 // tp_packets, tp_drops
	l := uint32(unsafe.Sizeof(st))
	_, _, e := syscall.Syscall6(syscall.SYS_GETSOCKOPT, uintptr(s.fd), solPacket, packetStatistics,
		uintptr(unsafe.Pointer(&st)), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return -1
	}
	return int(st[1])
}

// close stops reading and closes the socket; it returns why reading
// stopped early, if it did.
func (s *sniffer) close() error {
	s.stopped.Store(true)
	<-s.done
	syscall.Close(s.fd)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// htons converts a short to network byte order.
func htons(v uint16) uint16 { return v<<8 | v>>8 }
