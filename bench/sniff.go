package main

import (
	"bytes"
	"encoding/binary"
)

// eventPrefix starts every chunk of a streamed chat completion.
const eventPrefix = `data: {"id":"`

// tcpPayload returns the TCP payload of an IPv4 packet (no link header), or
// nil when pkt is not one.
func tcpPayload(pkt []byte) []byte {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return nil
	}
	ihl := int(pkt[0]&0x0f) * 4
	total := min(int(binary.BigEndian.Uint16(pkt[2:4])), len(pkt))
	if ihl < 20 || total < ihl+20 {
		return nil
	}
	doff := int(pkt[ihl+12]>>4) * 4
	if doff < 20 || ihl+doff > total {
		return nil
	}
	return pkt[ihl+doff : total]
}

// eventIDs returns the completion id of every SSE event that starts in b, in
// order (HTTP chunk framing around them does not matter).
func eventIDs(b []byte) []string {
	var ids []string
	for {
		i := bytes.Index(b, []byte(eventPrefix))
		if i < 0 {
			return ids
		}
		b = b[i+len(eventPrefix):]
		j := bytes.IndexByte(b, '"')
		if j < 0 {
			return ids
		}
		ids = append(ids, string(b[:j]))
		b = b[j:]
	}
}
