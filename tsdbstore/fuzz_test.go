package tsdbstore

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// FuzzScanSegment feeds arbitrary bytes, followed by good frames, to the
// event log's reader: it must not fail or panic, must find every good frame
// after the damage, and must visit only records of frames that check out.
func FuzzScanSegment(f *testing.F) {
	good := appendFrame(nil, appendRecord(nil, 1_764_000_000_000_000, 1_764_000_000_000, 7, 0, 0, 0, "id-1", []byte(`{"event_name":"x"}`)))
	good2 := appendFrame(nil, appendRecord(nil, 1_764_000_000_000_001, 1_764_000_000_001, 7, 1, 0, event.OverflowScore(2), "", bytes.Repeat([]byte(`{"event_name":"y"}`), 40)))
	f.Add([]byte{})
	f.Add(good[:len(good)-3])
	f.Add(append(append([]byte{}, good...), 0xff, 0, 0, 0))
	flipped := append([]byte{}, good2...)
	flipped[20] ^= 1
	f.Add(flipped)
	f.Fuzz(func(t *testing.T, garbage []byte) {
		path := filepath.Join(t.TempDir(), segmentName("", 1))
		content := append(append(append([]byte{}, garbage...), good...), good2...)
		if err := os.WriteFile(path, content, 0o644); err != nil {
			t.Fatal(err)
		}
		var ids []string
		sc, err := scanSegment(path, 0, -1, nil, func(r *LogRecord) error {
			ids = append(ids, r.ClientID)
			return nil
		})
		if err != nil {
			t.Fatalf("scan: %v", err)
		}
		if len(ids) < 2 || ids[len(ids)-2] != "id-1" || ids[len(ids)-1] != "" {
			t.Fatalf("the good frames after %d bytes of damage were not all found: %q", len(garbage), ids)
		}
		if sc.tail != nil || sc.end != int64(len(content)) {
			t.Fatalf("scan ends at %d of %d, tail %v", sc.end, len(content), sc.tail)
		}
		// The damaged spans and the good frames tile the file.
		var covered int64
		for _, d := range sc.damaged {
			covered += d.End - d.Start
		}
		if covered > int64(len(garbage)) {
			t.Fatalf("%d bytes called damaged, only %d were", covered, len(garbage))
		}
	})
}

// FuzzPointsNames feeds arbitrary bytes as points.names: opening must not
// fail or panic, and damage must be noticed rather than trusted.
func FuzzPointsNames(f *testing.F) {
	f.Add(encodeName(encodeName(nil, "gpt-4"), "openai"))
	f.Add([]byte("gpt-4\nopenai\n"))
	f.Add([]byte("00000000 \n"))
	f.Fuzz(func(t *testing.T, names []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, namesFile), names, 0o644); err != nil {
			t.Fatal(err)
		}
		x, err := openPointIndex(dir)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		defer x.close()
		if x.damaged == nil {
			// Accepted: every line checked out, so writing them again
			// gives back the same bytes.
			var b []byte
			for _, n := range x.list {
				b = encodeName(b, n)
			}
			if !bytes.Equal(b, names) {
				t.Fatalf("accepted names that do not write back the same: %q", names)
			}
		}
	})
}

// FuzzPointsExtra feeds arbitrary bytes as one entry of points.extra:
// decoding must not panic, and what it accepts encodes back the same.
func FuzzPointsExtra(f *testing.F) {
	x := &pointIndex{ids: map[string]uint32{}}
	var names []byte
	e := &event.Event{SampleID: event.Some("q-17"), Scores: []event.Score{{Name: "exact_match", Value: 1}, {Name: "judge", Value: 0.25}}}
	var entry []byte
	entry = binary.AppendUvarint(entry, uint64(len(e.SampleID.V)))
	entry = append(entry, e.SampleID.V...)
	entry = binary.AppendUvarint(entry, uint64(len(e.Scores)))
	for _, s := range e.Scores {
		entry = binary.AppendUvarint(entry, uint64(x.id(s.Name, &names)))
		entry = binary.LittleEndian.AppendUint64(entry, math.Float64bits(s.Value))
	}
	f.Add(entry)
	f.Add(append(entry, make([]byte, len(event.SpanKey{}))...))
	f.Add([]byte{0, 0})
	f.Add([]byte{5, 'a', 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		sample, scores, span, hasSpan, err := decodeExtra(b, x.list, nil)
		if err != nil {
			return
		}
		var back []byte
		back = binary.AppendUvarint(back, uint64(len(sample)))
		back = append(back, sample...)
		back = binary.AppendUvarint(back, uint64(len(scores)))
		for _, s := range scores {
			back = binary.AppendUvarint(back, uint64(x.ids[s.Name]))
			back = binary.LittleEndian.AppendUint64(back, math.Float64bits(s.Value))
		}
		if hasSpan {
			back = append(back, span[:]...)
		}
		if !bytes.Equal(back, b) {
			t.Fatalf("accepted %x, which encodes back as %x", b, back)
		}
	})
}
