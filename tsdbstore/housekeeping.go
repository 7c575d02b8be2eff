package tsdbstore

import (
	"cmp"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// housekeepingInterval paces the store's background work.
const housekeepingInterval = time.Second

// loop fsyncs the log every sync interval and, every second, closes full
// log segments, moves full head chunks to disk, records the replay position
// and expires state.
func (s *Store) loop() {
	defer close(s.done)
	t := time.NewTicker(housekeepingInterval)
	defer t.Stop()
	lastSync := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			if s.opts.SyncInterval > 0 && now.Sub(lastSync) >= s.opts.SyncInterval {
				if err := s.log.sync(); err != nil {
					s.logger.Error("fsync event log", "err", err)
				}
				if err := s.points.sync(); err != nil {
					s.logger.Error("fsync points index", "err", err)
				}
				lastSync = now
			}
			s.tick()
		}
	}
}

func (s *Store) tick() {
	if err := s.log.closeRetired(); err != nil {
		s.logger.Error("close full event log segments", "err", err)
	}
	// The head writes full chunks to disk once a minute; at a high event
	// rate that minute is a lot of memory, so write them every tick.
	s.db.ForceHeadMMap()
	s.mu.Lock()
	s.slots.prune()
	s.dedup.advance(time.Now().UnixMicro())
	s.mu.Unlock()
	s.recordApplied()
}

// recordApplied writes the replay position once what it claims is on
// disk: the TSDB's write-ahead logs are fsynced first, so that after a
// power loss a replay never starts past samples the TSDB lost.
func (s *Store) recordApplied() {
	applied := *s.applied.Load()
	if applied == s.written {
		return
	}
	if err := syncWriteAheadLogs(filepath.Join(s.dir, tsdbDir)); err != nil {
		s.logger.Error("fsync the TSDB's write-ahead log", "err", err)
		return
	}
	if err := s.writeApplied(applied); err != nil {
		s.logger.Error("record TSDB replay position", "err", err)
		return
	}
	s.written = applied
}

// syncWriteAheadLogs fsyncs the newest segments of the TSDB's WAL and of
// its out-of-order WBL: the TSDB writes each commit to them but fsyncs a
// segment only when it is full. The two newest, as a segment may just have
// been cut.
func syncWriteAheadLogs(tsdbDir string) error {
	for _, sub := range []string{"wal", "wbl"} {
		dir := filepath.Join(tsdbDir, sub)
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		for _, name := range newestSegments(entries, 2) {
			if err := syncFile(filepath.Join(dir, name)); err != nil {
				return err
			}
		}
	}
	return nil
}

// newestSegments are the names of the n highest-numbered segment files.
func newestSegments(entries []fs.DirEntry, n int) []string {
	var segs []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err == nil && e.Type().IsRegular() {
			segs = append(segs, e.Name())
		}
	}
	slices.SortFunc(segs, func(a, b string) int { return cmp.Or(cmp.Compare(len(a), len(b)), cmp.Compare(a, b)) })
	return segs[max(0, len(segs)-n):]
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}

// Sync fsyncs the event log and the points index.
func (s *Store) Sync() error { return errors.Join(s.log.sync(), s.points.sync()) }
