package api

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
)

// freeBuffers keeps a few body buffers for reuse. Unlike a sync.Pool it
// is bounded: under a burst of requests a pool keeps every buffer of the
// burst until the next collections, which costs more memory than the
// in-flight budget allows for.
var freeBuffers = make(chan *bytes.Buffer, 8)

// maxFreeBuffer is the largest buffer kept for reuse.
const maxFreeBuffer = 4 << 20

func getBuffer() *bytes.Buffer {
	select {
	case b := <-freeBuffers:
		b.Reset()
		return b
	default:
		return new(bytes.Buffer)
	}
}

func putBuffer(b *bytes.Buffer) {
	if b.Cap() > maxFreeBuffer {
		return
	}
	select {
	case freeBuffers <- b:
	default:
	}
}

// body is a request body read into memory. It holds its share of the
// in-flight byte budget until release.
type body struct {
	*bytes.Buffer
	budget *budget
	held   int64
}

// release gives back the buffer and the budget the body held.
func (b *body) release() {
	b.budget.give(b.held)
	b.held = 0
	if b.Buffer != nil {
		putBuffer(b.Buffer)
		b.Buffer = nil
	}
}

// hold makes the body hold n bytes of the budget in all; false when the
// budget has no room for them.
func (b *body) hold(n int64) bool {
	if n <= b.held {
		return true
	}
	if !b.budget.take(n - b.held) {
		return false
	}
	b.held = n
	return true
}

// budgetReader reads from r, holding budget for every byte it produced.
type budgetReader struct {
	r    io.Reader
	body *body
	n    int64
}

func (br *budgetReader) Read(p []byte) (int, error) {
	n, err := br.r.Read(p)
	br.n += int64(n)
	if !br.body.hold(br.n) {
		return 0, errBusy
	}
	return n, err
}

// maxSnappyRatio bounds what a snappy block can expand to: its densest
// element is a 3-byte copy of 64 bytes.
const maxSnappyRatio = 64.0 / 3

// readBody reads the request body, decompressing it per Content-Encoding.
// Both the compressed and the decompressed size are bounded by limit, so a
// compression bomb is refused after reading at most limit+1 bytes of
// output. The decompressed bytes count against the in-flight budget as
// they arrive; a declared Content-Length counts at once, waiting until
// deadline for room, so a body that cannot fit is refused before it is
// read. A body is called too large on the
// evidence of bytes read, not of a size its header declares: garbage
// often declares absurd sizes. The body goes back with release.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, bud *budget, deadline time.Time) (*body, error) {
	if r.ContentLength > limit {
		return nil, fmt.Errorf("%w: Content-Length %d, limit %d", errBodyTooLarge, r.ContentLength, limit)
	}
	b := &body{budget: bud}
	if r.ContentLength > 0 {
		if !bud.wait(r.Context(), r.ContentLength, deadline) {
			return nil, fmt.Errorf("%w: no room for a body of %d bytes under --ingest.max-inflight-bytes; retry later", errBusy, r.ContentLength)
		}
		b.held = r.ContentLength
	}
	// A buffer only once there is room: waiting requests hold no memory.
	b.Buffer = getBuffer()
	if need := int(r.ContentLength) + bytes.MinRead; r.ContentLength > 0 && r.Header.Get("Content-Encoding") == "" && b.Cap() < need {
		// Exactly the size, rather than the doubling of Grow: the memory
		// held stays what the budget counts.
		b.Buffer = bytes.NewBuffer(make([]byte, 0, need))
	}
	if err := b.read(w, r, limit); err != nil {
		b.release()
		return nil, err
	}
	return b, nil
}

func (b *body) read(w http.ResponseWriter, r *http.Request, limit int64) error {
	raw := http.MaxBytesReader(w, r.Body, limit)
	var src io.Reader = raw
	head := &headReader{r: raw}
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	switch enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(raw)
		if err != nil {
			return decodeError(enc, err, limit)
		}
		defer zr.Close()
		src = zr
	case "zstd":
		// The window bounds the decoder's memory; the LimitReader below
		// bounds the size on the bytes actually decoded.
		zr, err := zstd.NewReader(head, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(uint64(max(limit, zstd.MinWindowSize))))
		if err != nil {
			return zstdError(err, head, r, limit)
		}
		defer zr.Close()
		src = zr
	case "snappy":
		// Snappy block format, as Prometheus remote write uses it.
		if _, err := b.ReadFrom(&budgetReader{r: raw, body: b}); err != nil {
			return readError(err, limit)
		}
		compressed := b.Bytes()
		n, err := snappy.DecodedLen(compressed)
		if err != nil {
			return fmt.Errorf("%w: snappy: %v", errBadRequest, err)
		}
		if float64(n) > maxSnappyRatio*float64(len(compressed))+16 {
			return fmt.Errorf("%w: snappy: corrupt block (declares %d bytes, more than %d compressed bytes can hold)", errBadRequest, n, len(compressed))
		}
		if int64(n) > limit {
			return fmt.Errorf("%w: decompresses to %d bytes, limit %d", errBodyTooLarge, n, limit)
		}
		if !b.hold(int64(len(compressed) + n)) {
			return fmt.Errorf("%w: no room to decompress %d bytes under --ingest.max-inflight-bytes; retry later", errBusy, n)
		}
		out, err := snappy.Decode(nil, compressed)
		if err != nil {
			return fmt.Errorf("%w: snappy: %v", errBadRequest, err)
		}
		b.Reset()
		b.Write(out)
		return nil
	default:
		return fmt.Errorf("%w: unsupported Content-Encoding %q (use gzip, zstd or snappy)", errBadRequest, enc)
	}
	if _, err := b.ReadFrom(&budgetReader{r: io.LimitReader(src, limit+1), body: b}); err != nil {
		if enc == "zstd" {
			return zstdError(err, head, r, limit)
		}
		return decodeError(enc, err, limit)
	}
	if int64(b.Len()) > limit {
		return fmt.Errorf("%w: more than %d bytes after decompression", errBodyTooLarge, limit)
	}
	return nil
}

// decodeError explains a failure while reading or decompressing: a
// failure to read the body itself, else corrupt compressed data.
func decodeError(enc string, err error, limit int64) error {
	var mbe *http.MaxBytesError
	var ne net.Error
	switch {
	case enc == "" || enc == "identity" || errors.Is(err, errBusy) || errors.As(err, &mbe) || errors.As(err, &ne):
		return readError(err, limit)
	}
	return fmt.Errorf("%w: %s: %v", errBadRequest, enc, err)
}

// headReader keeps the first bytes read through it: a zstd frame header.
type headReader struct {
	r    io.Reader
	head []byte
	n    int64
}

func (h *headReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if keep := min(n, zstdMaxHeader-len(h.head)); keep > 0 {
		h.head = append(h.head, p[:keep]...)
	}
	h.n += int64(n)
	return n, err
}

// zstdError explains a zstd failure. The decoder refuses a frame whose
// header declares a window or content size beyond the limit before it
// decodes anything; that is a 413 only for a well-formed header declaring
// a content size its compressed bytes could produce.
func zstdError(err error, head *headReader, r *http.Request, limit int64) error {
	if !errors.Is(err, zstd.ErrWindowSizeExceeded) && !errors.Is(err, zstd.ErrDecoderSizeExceeded) {
		return decodeError("zstd", err, limit)
	}
	compressed := r.ContentLength
	if compressed < 0 {
		io.Copy(io.Discard, head) // bounded by the MaxBytesReader under it
		compressed = head.n
	}
	size, ok := zstdContentSize(head.head)
	switch {
	case ok && size > uint64(limit) && size <= zstdMaxExpansion(compressed):
		return fmt.Errorf("%w: zstd frame of %d bytes, limit %d", errBodyTooLarge, size, limit)
	case ok && size > uint64(limit):
		return fmt.Errorf("%w: zstd: corrupt frame (declares %d bytes, more than %d compressed bytes can hold)", errBadRequest, size, compressed)
	}
	return fmt.Errorf("%w: zstd: the frame's window is beyond the limit of %d bytes (corrupt data, or compressed with a larger window)", errBadRequest, limit)
}

// zstdMaxHeader is the longest zstd frame header: magic, descriptor,
// window, a 4-byte dictionary id and an 8-byte content size.
const zstdMaxHeader = 4 + 1 + 1 + 4 + 8

// zstdContentSize reads the content size a zstd frame header declares
// (RFC 8878 §3.1.1.1); false when the header has none or is malformed.
func zstdContentSize(h []byte) (uint64, bool) {
	if len(h) < 5 || h[0] != 0x28 || h[1] != 0xb5 || h[2] != 0x2f || h[3] != 0xfd {
		return 0, false
	}
	fhd := h[4]
	if fhd&0x08 != 0 { // reserved bit
		return 0, false
	}
	single := fhd&0x20 != 0
	fcsSize := [4]int{0, 2, 4, 8}[fhd>>6]
	if fcsSize == 0 && single {
		fcsSize = 1
	}
	if fcsSize == 0 {
		return 0, false
	}
	pos := 5 + [4]int{0, 1, 2, 4}[fhd&3]
	if !single {
		pos++ // window descriptor
	}
	if len(h) < pos+fcsSize {
		return 0, false
	}
	var size uint64
	for i := fcsSize - 1; i >= 0; i-- {
		size = size<<8 | uint64(h[pos+i])
	}
	if fcsSize == 2 {
		size += 256
	}
	return size, true
}

// zstdMaxExpansion bounds what n bytes of zstd can decode to: at best each
// 4 bytes are an RLE block of 128 KiB.
func zstdMaxExpansion(n int64) uint64 {
	return uint64(n/4+1) * (128 << 10)
}

func readError(err error, limit int64) error {
	var mbe *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.Is(err, errBusy):
		return fmt.Errorf("%w: request bodies in flight fill --ingest.max-inflight-bytes; retry later", errBusy)
	case errors.As(err, &mbe):
		return fmt.Errorf("%w: more than %d bytes", errBodyTooLarge, limit)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%w: the body did not arrive within --web.read-timeout", errBodyTimeout)
	}
	return fmt.Errorf("%w: reading body: %v", errBadRequest, err)
}
