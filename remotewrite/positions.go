package remotewrite

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// The queue of a receiver is the event log itself: what it keeps is, per
// experiment, how far into the log the receiver has acknowledged every
// sample. The positions move only after an acknowledgement and are kept
// in a file written atomically (after a pass, at most once a second, and
// on stop), so a restart resends at most the samples of requests in
// flight, a crash those acknowledged since the last save (about a
// second's, more while sends are retried), and neither skips one. A lost
// or damaged file sends
// everything again: a resent sample is harmless (same series, time and
// value).

const positionsFile = "positions.json"

// entry is how far a receiver has every sample of one experiment.
type entry struct {
	tsdbstore.Mark
	// Done: the experiment was archived, holding Events events, and
	// every sample of it was acknowledged; an archived experiment's store
	// is not opened again while its count is unchanged.
	Done   bool  `json:"done,omitempty"`
	Events int64 `json:"events,omitempty"`
	// Created is the experiment's creation time (Unix ns): an experiment
	// made again under its id is another log.
	Created int64 `json:"created,omitempty"`
}

type positionsDoc struct {
	URL         string           `json:"url"`
	Experiments map[string]entry `json:"experiments"`
}

// positions is the durable state of one receiver's queue. Only the
// queue's goroutine uses it.
type positions struct {
	path  string
	doc   positionsDoc
	dirty bool
}

// queueDir is where a receiver's queue keeps its positions: named by its
// URL, so a receiver whose URL changes starts from the beginning.
func queueDir(root, url string) string {
	sum := sha256.Sum256([]byte(url))
	return filepath.Join(root, hex.EncodeToString(sum[:8]))
}

func openPositions(dir, url string, logger *slog.Logger) (*positions, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := &positions{path: filepath.Join(dir, positionsFile)}
	b, err := os.ReadFile(p.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if err := json.Unmarshal(b, &p.doc); err != nil || !p.valid() {
			logger.Warn("remote-write positions unreadable; every sample is sent again", "file", p.path, "err", err)
			p.doc = positionsDoc{}
		}
	}
	p.doc.URL = url
	if p.doc.Experiments == nil {
		p.doc.Experiments = map[string]entry{}
	}
	return p, nil
}

func (p *positions) valid() bool {
	for _, e := range p.doc.Experiments {
		if e.Segment < 0 || e.Offset < 0 || e.Samples < 0 || e.Events < 0 {
			return false
		}
	}
	return true
}

func (p *positions) get(id string) entry { return p.doc.Experiments[id] }

func (p *positions) set(id string, e entry) {
	if p.doc.Experiments[id] != e {
		p.doc.Experiments[id] = e
		p.dirty = true
	}
}

// keepOnly forgets the experiments not in ids (deleted ones).
func (p *positions) keepOnly(ids map[string]bool) {
	for id := range p.doc.Experiments {
		if !ids[id] {
			delete(p.doc.Experiments, id)
			p.dirty = true
		}
	}
}

// save writes the positions when they changed: a temporary file, fsynced,
// renamed over the old one.
func (p *positions) save() error {
	if !p.dirty {
		return nil
	}
	b, err := json.Marshal(p.doc)
	if err != nil {
		return err
	}
	tmp := p.path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		return err
	}
	if err := os.Rename(tmp, p.path); err != nil {
		return fmt.Errorf("save remote-write positions: %w", err)
	}
	p.dirty = false
	return nil
}
