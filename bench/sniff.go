package main

import (
	"bytes"
	"encoding/binary"
)

// eventPrefix starts every chunk of a streamed chat completion.
const eventPrefix = `data: {"id":"`

// segment is the part of a TCP/IPv4 packet the capture reads.
type segment struct {
	dstPort uint16 // the source port is the backend's, fixed by the filter
	seq     uint32 // sequence number of the payload's first byte
	payload []byte
}

// tcpSegment parses an IPv4 packet (no link header); ok is false when pkt
// is not TCP over IPv4.
func tcpSegment(pkt []byte) (seg segment, ok bool) {
	if len(pkt) < 20 || pkt[0]>>4 != 4 || pkt[9] != 6 {
		return seg, false
	}
	ihl := int(pkt[0]&0x0f) * 4
	total := min(int(binary.BigEndian.Uint16(pkt[2:4])), len(pkt))
	if ihl < 20 || total < ihl+20 {
		return seg, false
	}
	tcp := pkt[ihl:total]
	doff := int(tcp[12]>>4) * 4
	if doff < 20 || doff > len(tcp) {
		return seg, false
	}
	return segment{
		dstPort: binary.BigEndian.Uint16(tcp[2:4]),
		seq:     binary.BigEndian.Uint32(tcp[4:8]),
		payload: tcp[doff:],
	}, true
}

// sseStart is an SSE event that starts in a segment.
type sseStart struct {
	off int    // offset in the payload
	id  string // completion id
}

// eventStarts returns every chunk of a streamed completion that starts in
// b, in order (HTTP chunk framing around them does not matter).
func eventStarts(b []byte) []sseStart {
	var out []sseStart
	for off := 0; ; {
		i := bytes.Index(b[off:], []byte(eventPrefix))
		if i < 0 {
			return out
		}
		start := off + i
		rest := b[start+len(eventPrefix):]
		j := bytes.IndexByte(rest, '"')
		if j < 0 {
			return out
		}
		out = append(out, sseStart{off: start, id: string(rest[:j])})
		off = start + len(eventPrefix) + j
	}
}
