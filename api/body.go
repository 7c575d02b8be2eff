package api

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/klauspost/compress/snappy"
	"github.com/klauspost/compress/zstd"
)

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readBody reads the request body, decompressing it per Content-Encoding.
// Both the compressed and the decompressed size are bounded by max, so a
// compression bomb is refused after reading at most max+1 bytes of output.
// The buffer goes back with putBuffer.
func readBody(w http.ResponseWriter, r *http.Request, max int64) (*bytes.Buffer, error) {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	raw := http.MaxBytesReader(w, r.Body, max)
	var src io.Reader = raw
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	switch enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(raw)
		if err != nil {
			putBuffer(buf)
			return nil, fmt.Errorf("%w: gzip: %v", errBadRequest, err)
		}
		defer zr.Close()
		src = zr
	case "zstd":
		zr, err := zstd.NewReader(raw, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(max)+1))
		if err != nil {
			putBuffer(buf)
			return nil, fmt.Errorf("%w: zstd: %v", errBadRequest, err)
		}
		defer zr.Close()
		src = zr
	case "snappy":
		// Snappy block format, as Prometheus remote write uses it.
		compressed, err := io.ReadAll(raw)
		if err != nil {
			putBuffer(buf)
			return nil, readError(err, max)
		}
		n, err := snappy.DecodedLen(compressed)
		if err != nil {
			putBuffer(buf)
			return nil, fmt.Errorf("%w: snappy: %v", errBadRequest, err)
		}
		if int64(n) > max {
			putBuffer(buf)
			return nil, fmt.Errorf("%w: decompresses to %d bytes, limit %d", errBodyTooLarge, n, max)
		}
		out, err := snappy.Decode(nil, compressed)
		if err != nil {
			putBuffer(buf)
			return nil, fmt.Errorf("%w: snappy: %v", errBadRequest, err)
		}
		buf.Write(out)
		return buf, nil
	default:
		putBuffer(buf)
		return nil, fmt.Errorf("%w: unsupported Content-Encoding %q (use gzip, zstd or snappy)", errBadRequest, enc)
	}
	if _, err := buf.ReadFrom(io.LimitReader(src, max+1)); err != nil {
		putBuffer(buf)
		return nil, readError(err, max)
	}
	if int64(buf.Len()) > max {
		putBuffer(buf)
		return nil, fmt.Errorf("%w: more than %d bytes after decompression", errBodyTooLarge, max)
	}
	return buf, nil
}

func readError(err error, max int64) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return fmt.Errorf("%w: more than %d bytes", errBodyTooLarge, max)
	}
	if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) {
		return fmt.Errorf("%w: decompresses to more than %d bytes", errBodyTooLarge, max)
	}
	return fmt.Errorf("%w: reading body: %v", errBadRequest, err)
}

func putBuffer(b *bytes.Buffer) {
	if b.Cap() > 64<<20 {
		return // let an outsized buffer go
	}
	bufPool.Put(b)
}
