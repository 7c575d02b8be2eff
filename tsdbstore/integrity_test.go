package tsdbstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

// frames appends n frames of per events each and returns the events.
func frames(t *testing.T, s *Store, n, per int) []*event.Event {
	t.Helper()
	base := time.Now().Add(-time.Minute).UnixMicro()
	var all []*event.Event
	for f := range n {
		var evs []*event.Event
		for i := range per {
			evs = append(evs, llmEvent(base+int64(f*per+i)*100, "gpt-4", float64(f*per+i)))
		}
		mustAppend(t, s, evs)
		all = append(all, evs...)
	}
	return all
}

// frameOffsets lists the offsets of the frames of a segment.
func frameOffsets(t *testing.T, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int64
	for off := 0; off < len(b); off += frameHeaderLen + int(binary.LittleEndian.Uint32(b[off:])) {
		offs = append(offs, int64(off))
	}
	return offs
}

func editFile(t *testing.T, path string, edit func(b []byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, edit(b), 0o644); err != nil {
		t.Fatal(err)
	}
}

func reopenLogged(t *testing.T, dir string, opts Options) (*Store, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	return openStore(t, dir, opts), &logs
}

// Damage with good frames after it is corruption, not a torn write: every
// good frame stays, the damaged bytes are skipped, counted, reported and
// left in the file, and the TSDB is brought back in line with the log.
func TestMidLogDamageKeepsEveryGoodFrame(t *testing.T) {
	for _, tc := range []struct {
		name    string
		segment int64 // segment size: small ones give several segments
		// wreck damages the log and returns how many events it destroyed.
		wreck func(t *testing.T, logDir string) int
	}{
		{"flipped byte at 10%", 0, func(t *testing.T, logDir string) int {
			path := segmentName(logDir, 1)
			offs := frameOffsets(t, path)
			editFile(t, path, func(b []byte) []byte { b[offs[1]+frameHeaderLen+20] ^= 0x40; return b })
			return 100
		}},
		{"frame length overwritten", 0, func(t *testing.T, logDir string) int {
			path := segmentName(logDir, 1)
			offs := frameOffsets(t, path)
			editFile(t, path, func(b []byte) []byte { binary.LittleEndian.PutUint32(b[offs[3]:], 1<<29); return b })
			return 100
		}},
		{"zeroed across two frames", 0, func(t *testing.T, logDir string) int {
			path := segmentName(logDir, 1)
			offs := frameOffsets(t, path)
			editFile(t, path, func(b []byte) []byte {
				clear(b[offs[4]+50 : offs[5]+50])
				return b
			})
			return 200
		}},
		{"damage in an earlier segment", 4 << 10, func(t *testing.T, logDir string) int {
			path := segmentName(logDir, 1)
			if _, err := os.Stat(segmentName(logDir, 3)); err != nil {
				t.Fatalf("want several segments: %v", err)
			}
			editFile(t, path, func(b []byte) []byte { b[frameHeaderLen+5] ^= 1; return b })
			return 100
		}},
		{"last frame of an earlier segment", 4 << 10, func(t *testing.T, logDir string) int {
			path := segmentName(logDir, 2)
			offs := frameOffsets(t, path)
			editFile(t, path, func(b []byte) []byte { b[offs[len(offs)-1]+frameHeaderLen+3] ^= 1; return b })
			return 100
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := testOptions(t)
			opts.SegmentSize = tc.segment
			s := openStore(t, dir, opts)
			all := frames(t, s, 10, 100)
			s.Close()
			logDir := filepath.Join(dir, logDirName)
			sizes := segmentSizes(t, logDir)
			lost := tc.wreck(t, logDir)

			s, logs := reopenLogged(t, dir, opts)
			if want := int64(len(all) - lost); s.Count() != want {
				t.Fatalf("count %d, want %d: a damaged frame must cost only its own events", s.Count(), want)
			}
			d := s.Damage()
			if d.Frames != 1 || d.Bytes == 0 || d.First == "" {
				t.Fatalf("damage %+v, want one region reported", d)
			}
			gauge := `# HELP crucible_event_log_corrupt_frames Damaged regions of the experiment's event log that reads skip (each usually one frame of events); 0 when the log is whole.
# TYPE crucible_event_log_corrupt_frames gauge
crucible_event_log_corrupt_frames{experiment_id="exp"} 1
`
			if err := testutil.GatherAndCompare(opts.Registerer.(prometheus.Gatherer), strings.NewReader(gauge), "crucible_event_log_corrupt_frames"); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "event log is damaged") {
				t.Fatalf("the damage was not logged as an error:\n%s", logs.String())
			}
			if strings.Contains(logs.String(), "cutting torn tail") {
				t.Fatal("damage before good frames was cut as a torn tail")
			}
			if got := segmentSizes(t, logDir); !equalSizes(got, sizes) {
				t.Fatalf("segment sizes %v, were %v: nothing may be cut or rewritten", got, sizes)
			}
			// The TSDB follows the log: it is rebuilt without the lost events.
			kept := survivors(t, s, all)
			checkSamples(t, s.DB(), kept)
			if !strings.Contains(logs.String(), "rebuilding it from the log") {
				t.Fatalf("the TSDB was not rebuilt:\n%s", logs.String())
			}
			// Appends go on; a second start finds the same damage and no
			// more work.
			mustAppend(t, s, []*event.Event{llmEvent(time.Now().UnixMicro(), "gpt-4", 1)})
			s.Close()
			s, logs = reopenLogged(t, dir, opts)
			defer s.Close()
			if s.Count() != int64(len(all)-lost+1) || s.Damage().Frames != 1 {
				t.Fatalf("second start: count %d damage %+v", s.Count(), s.Damage())
			}
			if strings.Contains(logs.String(), "rebuilding") {
				t.Fatalf("second start rebuilt again:\n%s", logs.String())
			}
			// Offline readers skip the same damage.
			n := 0
			d, err := ReadLog(logDir, func(*LogRecord) error { n++; return nil })
			if err != nil || int64(n) != s.Count() || d.Frames != 1 {
				t.Fatalf("ReadLog: %d records, damage %+v, err %v", n, d, err)
			}
		})
	}
}

func segmentSizes(t *testing.T, dir string) []int64 {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int64
	for _, n := range segs {
		fi, err := os.Stat(segmentName(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, fi.Size())
	}
	return sizes
}

func equalSizes(a, b []int64) bool {
	// A second start may add an empty segment; every old one is unchanged.
	for i := range b {
		if i >= len(a) || a[i] != b[i] {
			return false
		}
	}
	return true
}

// survivors are the events of all that the store still holds.
func survivors(t *testing.T, s *Store, all []*event.Event) []*event.Event {
	t.Helper()
	have := map[string]bool{}
	dec := event.GetDecoder()
	defer event.PutDecoder(dec)
	var e event.Event
	if err := s.Scan(context.Background(), func(r *LogRecord) error {
		if err := dec.DecodeRecord(r.Data, &e, false); err != nil {
			return err
		}
		have[e.EventID] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var kept []*event.Event
	for _, e := range all {
		if have[e.EventID] {
			kept = append(kept, e)
		}
	}
	return kept
}

// The TSDB and the points index are derived from the log: when they do not
// match it, they are rebuilt from it, whatever the replay position claims.
func TestDerivedStoresRebuiltFromTheLog(t *testing.T) {
	for _, tc := range []struct {
		name  string
		wreck func(t *testing.T, dir string)
		log   string
	}{
		{"tsdb deleted", func(t *testing.T, dir string) {
			if err := os.RemoveAll(filepath.Join(dir, tsdbDir)); err != nil {
				t.Fatal(err)
			}
		}, "the TSDB does not match the event log"},
		{"tsdb WAL cut short", func(t *testing.T, dir string) {
			wal := filepath.Join(dir, tsdbDir, "wal")
			entries, err := os.ReadDir(wal)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if fi, _ := e.Info(); fi.Mode().IsRegular() && fi.Size() > 0 {
					editFile(t, filepath.Join(wal, e.Name()), func(b []byte) []byte { return b[:len(b)/3] })
				}
			}
			os.RemoveAll(filepath.Join(dir, tsdbDir, "chunks_head"))
		}, "the TSDB does not match the event log"},
		{"latency edited in points.bin", func(t *testing.T, dir string) {
			editFile(t, filepath.Join(dir, pointsFile), func(b []byte) []byte {
				binary.LittleEndian.PutUint64(b[3*pointSize+8:], math.Float64bits(40_000))
				return b
			})
		}, "the points index does not match the event log"},
		{"points.names missing", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, namesFile)); err != nil {
				t.Fatal(err)
			}
		}, "the points index does not match the event log"},
		{"points.bin cut mid-record", func(t *testing.T, dir string) {
			editFile(t, filepath.Join(dir, pointsFile), func(b []byte) []byte { return b[:len(b)-10] })
		}, "the points index does not match the event log"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir, testOptions(t))
			all := frames(t, s, 5, 100)
			want := pointsOf(t, s)
			s.Close()
			tc.wreck(t, dir)
			s, logs := reopenLogged(t, dir, testOptions(t))
			defer s.Close()
			if !strings.Contains(logs.String(), tc.log) {
				t.Fatalf("want %q logged:\n%s", tc.log, logs.String())
			}
			checkSamples(t, s.DB(), all)
			if got := pointsOf(t, s); !samePoints(got, want) {
				t.Fatal("points differ from the log's after the rebuild")
			}
		})
	}
}

func pointsOf(t *testing.T, s *Store) []Point {
	t.Helper()
	var pts []Point
	if err := s.Points(context.Background(), func(p *Point) error { pts = append(pts, *p); return nil }); err != nil {
		t.Fatal(err)
	}
	return pts
}

// Damage to the points index met by a read is reported so the caller can
// read again, and the read again comes from the log.
func TestPointsIndexDamagedWhileOpen(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(t))
	defer s.Close()
	frames(t, s, 2, 50)
	want := pointsOf(t, s)
	editFile(t, filepath.Join(dir, pointsFile), func(b []byte) []byte { b[7*pointSize+9] ^= 1; return b })
	err := s.Points(context.Background(), func(*Point) error { return nil })
	if !errors.Is(err, ErrIndexDamaged) {
		t.Fatalf("err = %v, want ErrIndexDamaged", err)
	}
	if got := pointsOf(t, s); !samePoints(got, want) {
		t.Fatal("the read from the log differs")
	}
}

// An error answer means nothing of the batch is stored: not in the log,
// not in the TSDB, not after a restart; and storing resumes once the fault
// is gone.
// fullDisk is the error a failing TSDB commit stands in for.
var fullDisk = &fs.PathError{Op: "write", Path: "/data/tsdb/wal/00000001", Err: syscall.ENOSPC}

// failCommits makes the store's TSDB commits fail as on a full disk, until
// undone.
func failCommits(t *testing.T, s *Store) (undo func()) {
	s.failCommit = func() error { return fullDisk }
	return func() { s.failCommit = nil }
}

// failLogWrites makes the store's log writes fail, until undone: a
// descriptor that cannot write stands for a full disk.
func failLogWrites(t *testing.T, s *Store) (undo func()) {
	ro, err := os.Open(s.log.current.Name())
	if err != nil {
		t.Fatal(err)
	}
	rw := s.log.current
	s.log.current = ro
	return func() { s.log.current = rw; ro.Close() }
}

func TestFailedAppendStoresNothing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sync  time.Duration
		fault func(t *testing.T, s *Store) (undo func())
	}{
		{"TSDB commit fails", time.Second, failCommits},
		{"TSDB commit fails, fsync per answer", 0, failCommits},
		{"log write fails", time.Second, failLogWrites},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := testOptions(t)
			opts.SyncInterval = tc.sync
			s := openStore(t, dir, opts)
			before := frames(t, s, 2, 10)
			undo := tc.fault(t, s)
			base := time.Now().UnixMicro()
			batch := []*event.Event{llmEvent(base, "gpt-4", 1), llmEvent(base+1, "gpt-4", 2)}
			batch[0].EventID, batch[0].ClientID = "retry-me", true
			if _, err := s.Append(batch, time.Now()); err == nil {
				t.Fatal("append succeeded under the fault")
			}
			if s.Count() != int64(len(before)) || len(survivors(t, s, batch)) != 0 {
				t.Fatalf("count %d after a failed append, want %d", s.Count(), len(before))
			}
			checkSamples(t, s.DB(), before)
			undo()
			// Resumes by itself; the failed event id was not remembered.
			if res := mustAppend(t, s, batch); countStatus(res, Stored) != 2 {
				t.Fatalf("retry after the fault: %+v", res)
			}
			s.Close()
			s = openStore(t, dir, opts)
			defer s.Close()
			if s.Count() != int64(len(before)+2) {
				t.Fatalf("count after restart %d, want %d", s.Count(), len(before)+2)
			}
			checkSamples(t, s.DB(), append(before, batch...))
		})
	}
}

// The out-of-order window is about the TSDB's head, not the batch: a batch
// that spans more than the window is stored whole, in any order.
func TestBatchSpanningMoreThanTheWindow(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reverse bool
	}{{"in time order", false}, {"newest first", true}} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, t.TempDir(), testOptions(t))
			defer s.Close()
			base := time.Now().Add(-time.Hour).UnixMicro()
			var evs []*event.Event
			for i := range 900 { // one a second for 15 minutes; the window is 10
				evs = append(evs, llmEvent(base+int64(i)*1e6, "gpt-4", float64(i)))
			}
			if tc.reverse {
				for i, j := 0, len(evs)-1; i < j; i, j = i+1, j-1 {
					evs[i], evs[j] = evs[j], evs[i]
				}
			}
			if res := mustAppend(t, s, evs); countStatus(res, Stored) != 900 {
				t.Fatalf("stored %d of 900", countStatus(res, Stored))
			}
			checkSamples(t, s.DB(), evs)
			// The window still applies against what is stored.
			res := mustAppend(t, s, []*event.Event{llmEvent(base-int64(time.Hour/time.Microsecond), "gpt-4", 1)})
			if res[0].Status != Rejected || !errors.Is(res[0].Err, ErrTooOld) {
				t.Fatalf("an event older than the window: %+v", res[0])
			}
		})
	}
}

// Every reader of the store's files takes any length it may meet.
func TestLongNamesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testOptions(t))
	long := strings.Repeat("m", 3<<20)
	mustAppend(t, s, []*event.Event{llmEvent(time.Now().UnixMicro(), long, 5)})
	s.Close()
	s = openStore(t, dir, testOptions(t))
	defer s.Close()
	pts := pointsOf(t, s)
	if len(pts) != 1 || pts[0].Model != long {
		t.Fatalf("points after restart: %d", len(pts))
	}
}
