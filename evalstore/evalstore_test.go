package evalstore

import (
	"errors"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"testing"

	"github.com/crucible-telemetry/crucible-telemetry/event"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func key(n byte) event.SpanKey {
	var k event.SpanKey
	k[0], k[23] = 1, n
	return k
}

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Options{Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func add(t *testing.T, s *Store, evs ...Evaluation) []Rejection {
	t.Helper()
	rej, err := s.Add(evs)
	if err != nil {
		t.Fatal(err)
	}
	return rej
}

func scores(kv ...any) []event.Score {
	var out []event.Score
	for i := 0; i < len(kv); i += 2 {
		out = append(out, event.Score{Name: kv[i].(string), Value: kv[i+1].(float64)})
	}
	return out
}

func TestAddAndReopen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if !s.Empty() {
		t.Fatal("a new store is not empty")
	}
	rej := add(t, s,
		Evaluation{Span: key(1), Name: "relevance", Value: 0.5, TimestampUs: 1},
		Evaluation{Span: key(1), Name: "accuracy", Value: 1},
		Evaluation{Span: key(2), Name: "relevance", Value: 0.25},
		Evaluation{Span: key(1), Name: "relevance", Value: 0.75}, // a re-evaluation replaces
		Evaluation{Span: key(3), Name: "bad name", Value: 1},
		Evaluation{Span: key(3), Name: "nan", Value: math.NaN()},
		Evaluation{Name: "no_span", Value: 1},
	)
	if len(rej) != 3 || rej[0].Index != 4 || rej[1].Index != 5 || rej[2].Index != 6 {
		t.Fatalf("rejected %+v, want indexes 4, 5, 6", rej)
	}
	for _, r := range rej {
		if !errors.Is(r.Err, event.ErrInvalid) {
			t.Errorf("rejection %v is not ErrInvalid", r.Err)
		}
	}
	want := map[event.SpanKey][]event.Score{
		key(1): scores("accuracy", 1.0, "relevance", 0.75),
		key(2): scores("relevance", 0.25),
	}
	check := func(s *Store) {
		t.Helper()
		for k, w := range want {
			if got := s.Scores(k); !reflect.DeepEqual(got, w) {
				t.Errorf("Scores(%d) = %v, want %v", k[23], got, w)
			}
		}
		if got := s.Scores(key(3)); got != nil {
			t.Errorf("a span with only rejected evaluations has scores %v", got)
		}
		if s.Count() != 3 {
			t.Errorf("Count = %d, want 3", s.Count())
		}
	}
	check(s)
	s.Close()
	check(open(t, dir))
	ro, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	check(ro)
	if _, err := ro.Add([]Evaluation{{Span: key(1), Name: "x", Value: 1}}); err == nil {
		t.Error("a read-only store took an evaluation")
	}
}

func TestMaxScoresPerSpan(t *testing.T) {
	s := open(t, t.TempDir())
	var evs []Evaluation
	for i := range event.MaxScores + 2 {
		evs = append(evs, Evaluation{Span: key(1), Name: "s" + strconv.Itoa(i), Value: 1})
	}
	rej := add(t, s, evs...)
	if len(rej) != 2 {
		t.Fatalf("rejected %d, want 2", len(rej))
	}
	// A known name still updates; a new one is refused.
	if rej := add(t, s, Evaluation{Span: key(1), Name: "s0", Value: 2}, Evaluation{Span: key(1), Name: "new", Value: 1}); len(rej) != 1 || rej[0].Index != 1 {
		t.Fatalf("rejected %+v, want the new name only", rej)
	}
	if got := s.Scores(key(1)); len(got) != event.MaxScores || got[0].Value != 2 {
		t.Fatalf("scores %v", got)
	}
}

func TestOpenDamaged(t *testing.T) {
	evs := []Evaluation{
		{Span: key(1), Name: "a", Value: 1},
		{Span: key(2), Name: "b", Value: 2},
		{Span: key(3), Name: "c", Value: 3},
	}
	var file []byte
	var ends []int
	for _, ev := range evs {
		file = encode(file, ev)
		ends = append(ends, len(file))
	}
	for _, tc := range []struct {
		name    string
		damage  func([]byte) []byte
		keep    []byte // the spans left, by key byte
		records int
		size    int // of the file after Open
	}{
		{"intact", func(b []byte) []byte { return b }, []byte{1, 2, 3}, 0, ends[2]},
		{"torn tail", func(b []byte) []byte { return b[:ends[2]-3] }, []byte{1, 2}, 0, ends[1]},
		{"torn header", func(b []byte) []byte { return b[:ends[1]+5] }, []byte{1, 2}, 0, ends[1]},
		{"bad last record", func(b []byte) []byte { b[ends[2]-1] ^= 0xff; return b }, []byte{1, 2}, 0, ends[1]},
		{"bad middle record", func(b []byte) []byte { b[ends[0]+20] ^= 0xff; return b }, []byte{1, 3}, 1, ends[2]},
		{"bad first length", func(b []byte) []byte { b[0] = 0xff; return b }, []byte{2, 3}, 1, ends[2]},
		{"garbage", func(b []byte) []byte { return []byte("not an evaluations file at all") }, nil, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, File), tc.damage(append([]byte(nil), file...)), 0o644); err != nil {
				t.Fatal(err)
			}
			s := open(t, dir)
			for _, k := range []byte{1, 2, 3} {
				got := s.Scores(key(k)) != nil
				want := false
				for _, w := range tc.keep {
					want = want || w == k
				}
				if got != want {
					t.Errorf("span %d present = %v, want %v", k, got, want)
				}
			}
			if d := s.Damage(); d.Records != tc.records {
				t.Errorf("damage %+v, want %d records", d, tc.records)
			}
			fi, err := os.Stat(filepath.Join(dir, File))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size() != int64(tc.size) {
				t.Errorf("file size %d after Open, want %d", fi.Size(), tc.size)
			}
			// What comes next is appended after the last good record.
			add(t, s, Evaluation{Span: key(9), Name: "z", Value: 9})
			s.Close()
			if got := open(t, dir).Scores(key(9)); len(got) != 1 {
				t.Errorf("the evaluation added after Open is lost: %v", got)
			}
		})
	}
}

func TestMerge(t *testing.T) {
	for _, tc := range []struct {
		name               string
		own, overlay, want []event.Score
	}{
		{"no overlay", scores("a", 1.0), nil, scores("a", 1.0)},
		{"no own", nil, scores("a", 1.0), scores("a", 1.0)},
		{"disjoint", scores("a", 1.0, "c", 3.0), scores("b", 2.0, "d", 4.0), scores("a", 1.0, "b", 2.0, "c", 3.0, "d", 4.0)},
		{"overlay wins", scores("a", 1.0, "b", 1.0), scores("b", 2.0), scores("a", 1.0, "b", 2.0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Merge(tc.own, tc.overlay); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Merge = %v, want %v", got, tc.want)
			}
		})
	}
}

// FuzzOpen: any bytes in the file open without a panic, and every record
// kept decodes to a valid evaluation.
func FuzzOpen(f *testing.F) {
	f.Add(encode(encode(nil, Evaluation{Span: key(1), Name: "a", Value: 1}), Evaluation{Span: key(2), Name: "b", Value: 2}))
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, File), data, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, Options{Logger: discard})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for k, sc := range s.scores {
			if len(sc) == 0 || len(sc) > len(data) {
				t.Fatalf("span %x: %d scores from %d bytes", k, len(sc), len(data))
			}
			for _, x := range sc {
				if !event.ValidScoreName(x.Name) || math.IsNaN(x.Value) || math.IsInf(x.Value, 0) {
					t.Fatalf("kept an invalid score %+v", x)
				}
			}
		}
		fi, err := os.Stat(filepath.Join(dir, File))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > int64(len(data)) {
			t.Fatalf("Open grew the file from %d to %d bytes", len(data), fi.Size())
		}
	})
}

// Past MaxScores, a new span or name is refused as ErrFull; a score that
// replaces one held is still taken.
func TestMaxScores(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{MaxScores: 3, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rej := add(t, s,
		Evaluation{Span: key(1), Name: "a", Value: 1},
		Evaluation{Span: key(1), Name: "b", Value: 1},
		Evaluation{Span: key(2), Name: "a", Value: 1},
		Evaluation{Span: key(3), Name: "a", Value: 1}, // a fourth score
		Evaluation{Span: key(1), Name: "a", Value: 2}, // replaces
	)
	if len(rej) != 1 || rej[0].Index != 3 || !errors.Is(rej[0].Err, ErrFull) {
		t.Fatalf("rejected %+v, want index 3 as ErrFull", rej)
	}
	if s.Count() != 3 || s.Scores(key(1))[0].Value != 2 {
		t.Fatalf("count %d, scores %v", s.Count(), s.Scores(key(1)))
	}
}

// A file of mostly replaced records is compacted on open to the scores
// it holds, which it keeps; what follows is appended to the new file.
func TestCompactOnOpen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	for round := range 3 {
		var evs []Evaluation
		for i := range compactSlack {
			evs = append(evs, Evaluation{Span: key(byte(i % 7)), Name: "r" + strconv.Itoa(i%5), Value: float64(round*1000 + i)})
		}
		add(t, s, evs...)
	}
	want := map[byte][]event.Score{}
	for k := range byte(7) {
		want[k] = slices.Clone(s.Scores(key(k)))
	}
	s.Close()
	before, _ := os.Stat(filepath.Join(dir, File))
	s = open(t, dir)
	after, _ := os.Stat(filepath.Join(dir, File))
	if after.Size() >= before.Size()/10 {
		t.Fatalf("file %d bytes after compaction, %d before", after.Size(), before.Size())
	}
	add(t, s, Evaluation{Span: key(9), Name: "z", Value: 9})
	s.Close()
	s = open(t, dir)
	for k, w := range want {
		if got := s.Scores(key(k)); !reflect.DeepEqual(got, w) {
			t.Fatalf("span %d: %v after compaction, want %v", k, got, w)
		}
	}
	if s.Scores(key(9)) == nil {
		t.Fatal("the evaluation added after compaction is lost")
	}
	if _, err := os.Stat(filepath.Join(dir, File+".tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("compaction left its temporary file: %v", err)
	}
}
