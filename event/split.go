package event

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	json "github.com/goccy/go-json"
)

// ErrBody marks a request body whose framing cannot be parsed; nothing in it
// is stored.
var ErrBody = errors.New("malformed body")

// Split cuts a request body into the raw JSON of each event: one object, an
// array of objects, or NDJSON (one object per line). With ndjson set, lines
// are split without parsing, so a malformed line costs only that event; the
// other forms must parse as a whole.
func Split(body []byte, ndjson bool) ([][]byte, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%w: empty body", ErrBody)
	}
	if ndjson {
		return splitLines(trimmed), nil
	}
	if trimmed[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(trimmed, &items); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBody, err)
		}
		out := make([][]byte, len(items))
		for i, it := range items {
			out[i] = it
		}
		return out, nil
	}
	// One object, or several concatenated (NDJSON without its content type).
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	var out [][]byte
	for {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBody, err)
		}
		out = append(out, raw)
	}
	return out, nil
}

func splitLines(b []byte) [][]byte {
	out := make([][]byte, 0, bytes.Count(b, []byte{'\n'})+1)
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) > 0 {
			out = append(out, line)
		}
	}
	return out
}
