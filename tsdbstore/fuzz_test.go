package tsdbstore

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzScanSegment feeds arbitrary bytes, followed by good frames, to the
// event log's reader: it must not fail or panic, must find every good frame
// after the damage, and must visit only records of frames that check out.
func FuzzScanSegment(f *testing.F) {
	good := appendFrame(nil, appendRecord(nil, 1_764_000_000_000_000, 1_764_000_000_000, 7, 0, 0, "id-1", []byte(`{"event_name":"x"}`)))
	good2 := appendFrame(nil, appendRecord(nil, 1_764_000_000_000_001, 1_764_000_000_001, 7, 1, 0, "", bytes.Repeat([]byte(`{"event_name":"y"}`), 40)))
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
