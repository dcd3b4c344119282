package shadow

// The gateway and its helper talk over a pipe in frames of fields, each a
// uvarint (numbers; signed ones zig-zag encoded) or a uvarint length and
// that many bytes (strings, bodies): a helperConfig first, then copies
// one way and results the other. A copy's ID is never 0: a frame whose
// first field is 0 is a cancel, and its second field the ID of the copy
// to cancel (validation stopped while it was in flight). Both ends are the same binary; the
// reader still bounds every length, so that a damaged stream fails
// instead of allocating without bound.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// maxField bounds one string or body in a frame: a copy's body is at most
// shadow.max_body_bytes, an answer's text at most maxAnswer.
const maxField = 64 << 20

// frameWriter encodes frames into w, through one reused buffer.
type frameWriter struct {
	w *bufio.Writer
	b []byte
}

func (f *frameWriter) write(b []byte) error {
	f.b = b[:0]
	_, err := f.w.Write(b)
	return err
}

func (f *frameWriter) config(c helperConfig) error {
	b := binary.AppendUvarint(f.b[:0], uint64(c.Concurrency))
	return f.write(binary.AppendVarint(b, int64(c.Timeout)))
}

func (f *frameWriter) copy(c *copyRequest) error {
	b := binary.AppendUvarint(f.b[:0], c.ID)
	b = appendField(b, c.URL)
	b = appendField(b, c.Path)
	b = appendField(b, c.Authorization)
	b = appendField(b, c.Body)
	return f.write(append(b, flags(c.Deterministic, false)))
}

// cancel asks the helper to cancel the copy id (see the package's frames).
func (f *frameWriter) cancel(id uint64) error {
	b := binary.AppendUvarint(f.b[:0], 0)
	return f.write(binary.AppendUvarint(b, id))
}

func (f *frameWriter) result(r *helperResult) error {
	b := binary.AppendUvarint(f.b[:0], r.ID)
	b = binary.AppendVarint(b, int64(r.Result.Status))
	b = binary.AppendVarint(b, int64(r.Result.TTFT))
	b = binary.AppendVarint(b, int64(r.Result.Duration))
	b = binary.AppendVarint(b, int64(r.Result.Tokens))
	b = append(b, flags(r.Result.StreamError, r.Result.Truncated))
	b = appendField(b, r.Result.Err)
	return f.write(appendField(b, r.Result.Text))
}

func appendField[T string | []byte](b []byte, s T) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func flags(a, b bool) byte {
	var f byte
	if a {
		f |= 1
	}
	if b {
		f |= 2
	}
	return f
}

// frameReader decodes frames from r. An end of input between frames is
// io.EOF; inside one, io.ErrUnexpectedEOF.
type frameReader struct {
	r   *bufio.Reader
	err error // the first error; every later read returns zero values
}

// start reads the first field of a frame, where an end of input is clean.
func (f *frameReader) start() uint64 {
	v, err := binary.ReadUvarint(f.r)
	f.err = err
	return v
}

func (f *frameReader) uvarint() uint64 {
	if f.err != nil {
		return 0
	}
	v, err := binary.ReadUvarint(f.r)
	f.fail(err)
	return v
}

func (f *frameReader) varint() int64 {
	if f.err != nil {
		return 0
	}
	v, err := binary.ReadVarint(f.r)
	f.fail(err)
	return v
}

func (f *frameReader) byte() byte {
	if f.err != nil {
		return 0
	}
	c, err := f.r.ReadByte()
	f.fail(err)
	return c
}

func (f *frameReader) bytes() []byte {
	n := f.uvarint()
	if f.err != nil {
		return nil
	}
	if n > maxField {
		f.err = fmt.Errorf("shadow helper frame: a field of %d bytes (at most %d)", n, maxField)
		return nil
	}
	b := make([]byte, n)
	_, err := io.ReadFull(f.r, b)
	f.fail(err)
	return b
}

// fail records err, an end of input being unexpected inside a frame.
func (f *frameReader) fail(err error) {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	if f.err == nil {
		f.err = err
	}
}

func (f *frameReader) config() (helperConfig, error) {
	c := helperConfig{Concurrency: int(min(f.start(), 1<<20))}
	c.Timeout = time.Duration(f.varint())
	return c, f.err
}

func (f *frameReader) copy() (*copyRequest, error) {
	return f.copyWith(f.start())
}

// next reads the gateway's next frame: a copy, or the ID of a copy to
// cancel.
func (f *frameReader) next() (c *copyRequest, cancel uint64, err error) {
	id := f.start()
	if f.err == nil && id == 0 {
		cancel = f.uvarint()
		if f.err == nil && cancel == 0 {
			f.err = errors.New("shadow helper frame: a cancel of copy 0")
		}
		return nil, cancel, f.err
	}
	c, err = f.copyWith(id)
	return c, 0, err
}

// copyWith reads the rest of the copy whose ID was read.
func (f *frameReader) copyWith(id uint64) (*copyRequest, error) {
	c := &copyRequest{ID: id}
	c.URL = string(f.bytes())
	c.Path = string(f.bytes())
	c.Authorization = string(f.bytes())
	c.Body = f.bytes()
	c.Deterministic = f.byte()&1 != 0
	return c, f.err
}

func (f *frameReader) result() (helperResult, error) {
	r := helperResult{ID: f.start()}
	r.Result.Status = int(f.varint())
	r.Result.TTFT = time.Duration(f.varint())
	r.Result.Duration = time.Duration(f.varint())
	r.Result.Tokens = int(f.varint())
	fl := f.byte()
	r.Result.StreamError, r.Result.Truncated = fl&1 != 0, fl&2 != 0
	r.Result.Err = string(f.bytes())
	r.Result.Text = string(f.bytes())
	return r, f.err
}
