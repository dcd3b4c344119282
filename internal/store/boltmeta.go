package store

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// bbolt's meta page, as go.etcd.io/bbolt/internal/common lays it out: a
// 16-byte page header, then magic, version, page size, flags (uint32
// each), the root bucket (16 bytes), the freelist page, the high-water
// page id, the transaction id and an FNV-64a checksum of what precedes it
// (uint64 each), in the machine's byte order (little-endian on the
// platforms cutover ships for).
const (
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	boltPageHeader  = 16
	boltMetaSum     = 56 // offset of the checksum within the meta
	boltMetaLen     = boltMetaSum + 8
	boltMinPageSize = 1024
)

// boltMeta is what checkLength needs of one meta page.
type boltMeta struct {
	pageSize uint32
	pgid     uint64 // pages in use: the file holds at least pgid*pageSize bytes
	txid     uint64
}

// parseBoltMeta reads the meta page at the start of b; ok is false when
// b holds no valid one (wrong magic or version, bad checksum).
func parseBoltMeta(b []byte) (m boltMeta, ok bool) {
	if len(b) < boltPageHeader+boltMetaLen {
		return m, false
	}
	b = b[boltPageHeader : boltPageHeader+boltMetaLen]
	le := binary.LittleEndian
	if le.Uint32(b[0:]) != boltMagic || le.Uint32(b[4:]) != boltVersion {
		return m, false
	}
	h := fnv.New64a()
	_, _ = h.Write(b[:boltMetaSum])
	if h.Sum64() != le.Uint64(b[boltMetaSum:]) {
		return m, false
	}
	m = boltMeta{pageSize: le.Uint32(b[8:]), pgid: le.Uint64(b[40:]), txid: le.Uint64(b[48:])}
	return m, m.pageSize >= boltMinPageSize
}

// checkLength refuses a bbolt file shorter than its own meta page says
// (a truncated copy, a write cut short by a full disk): bbolt maps the
// missing pages, and the first read of one kills the process with SIGBUS,
// which no recover catches. A file without a valid meta page is left to
// bbolt, which reports it as invalid.
func checkLength(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return nil // bbolt's open reports it
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	size := fi.Size()
	read := func(off int64) (boltMeta, bool) {
		b := make([]byte, boltPageHeader+boltMetaLen)
		if _, err := f.ReadAt(b, off); err != nil && err != io.EOF {
			return boltMeta{}, false
		}
		return parseBoltMeta(b)
	}
	// The first meta page says where the second is; without it, look
	// where bbolt would.
	var metas []boltMeta
	offsets := []int64{int64(os.Getpagesize()), 4096}
	if m, ok := read(0); ok {
		metas = append(metas, m)
		offsets = []int64{int64(m.pageSize)}
	}
	for i, off := range offsets {
		if i > 0 && off == offsets[0] {
			continue
		}
		if m, ok := read(off); ok {
			metas = append(metas, m)
			break
		}
	}
	if len(metas) == 0 {
		return nil
	}
	// bbolt uses the valid meta page of the later transaction.
	m := metas[0]
	if len(metas) == 2 && metas[1].txid > m.txid {
		m = metas[1]
	}
	need := uint64(2) * uint64(m.pageSize)
	if m.pgid > 2 && m.pgid < (1<<63)/uint64(m.pageSize) {
		need = m.pgid * uint64(m.pageSize)
	}
	if uint64(size) < need {
		return damaged(path, fmt.Sprintf("the file is truncated: %d bytes, but it holds %d pages of %d bytes (%d bytes) at transaction %d",
			size, need/uint64(m.pageSize), m.pageSize, need, m.txid), nil)
	}
	return nil
}
