package experiment

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// errNoRecord means an experiment directory has neither record file.
var errNoRecord = errors.New("no " + recordFile)

// writeRecord replaces the record atomically and durably, then its copy:
// whatever happens to one file, the other holds this record or the one
// before it.
func writeRecord(dir string, r Record) error {
	r.Storage = nil // computed on every view, never stored
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	for _, name := range []string{recordFile, recordCopy} {
		if err := writeFileAtomic(dir, name, b); err != nil {
			return err
		}
	}
	return nil
}

func writeFileAtomic(dir, name string, b []byte) error {
	tmp := filepath.Join(dir, name+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	return tsdbstore.SyncDir(dir)
}

// readRecordFile reads an experiment's record, from its copy when the
// record file is missing or damaged (recovered is then true).
func readRecordFile(dir string) (rec Record, recovered bool, err error) {
	first := decodeRecordFile(filepath.Join(dir, recordFile), &rec)
	if first == nil {
		return rec, false, nil
	}
	rec = Record{}
	second := decodeRecordFile(filepath.Join(dir, recordCopy), &rec)
	if second == nil {
		return rec, true, nil
	}
	if errors.Is(first, os.ErrNotExist) && errors.Is(second, os.ErrNotExist) {
		return Record{}, false, errNoRecord
	}
	return Record{}, false, fmt.Errorf("%w; %w", first, second)
}

func decodeRecordFile(path string, rec *Record) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, rec); err != nil {
		return fmt.Errorf("%s is damaged: %w", path, err)
	}
	if !ValidID(rec.ID) || rec.Name == "" || !validStatus(rec.Status) {
		return fmt.Errorf("%s is damaged: not an experiment record", path)
	}
	return nil
}

func validStatus(s Status) bool {
	for _, v := range Statuses {
		if s == v {
			return true
		}
	}
	return false
}

// readRecord reads the record of an experiment directory; a record
// recovered from its copy is written back.
func (m *Manager) readRecord(dir string) (Record, error) {
	rec, recovered, err := readRecordFile(dir)
	if err != nil || !recovered {
		return rec, err
	}
	m.logger.Warn("experiment record was missing or damaged; recovered it from its copy", "dir", dir, "copy", recordCopy)
	if err := writeRecord(dir, rec); err != nil {
		return Record{}, fmt.Errorf("rewrite recovered record: %w", err)
	}
	return rec, nil
}

// logEmpty tells whether an experiment directory holds no events: then it
// is what a create that did not finish left behind.
func logEmpty(dir string) bool {
	entries, err := os.ReadDir(filepath.Join(dir, eventsDir))
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	if err != nil {
		return false
	}
	for _, e := range entries {
		if info, err := e.Info(); err != nil || info.Size() > 0 {
			return false
		}
	}
	return true
}
