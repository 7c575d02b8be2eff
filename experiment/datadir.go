package experiment

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The data directory (--storage.path) is laid out as SPEC §5 and §18 say:
//
//	<storage.path>/lock                                 held by the one process using the directory
//	<storage.path>/anonymize.key                        key of anonymized exports
//	<storage.path>/evaluations.log                      scores that arrive apart from their events (evalstore)
//	<storage.path>/experiments/<id>/experiment.json     the record (written atomically)
//	<storage.path>/experiments/<id>/experiment.json.prev the same record, a second copy
//	<storage.path>/experiments/<id>/events/             the event log (tsdbstore)
//	<storage.path>/experiments/<id>/tsdb/               the TSDB (tsdbstore)
//	<storage.path>/archives/<id>.tar.gz
//	<storage.path>/remote-write/<url hash>/positions.json how far each receiver has every experiment's samples (remotewrite)
const (
	lockFile       = "lock"
	anonymizeFile  = "anonymize.key"
	experimentsDir = "experiments"
	archivesDir    = "archives"
	recordFile     = "experiment.json"
	// recordCopy is the record written a second time, so that damage to
	// one file leaves the other readable.
	recordCopy = recordFile + ".prev"
	eventsDir  = "events"
	remoteDir  = "remote-write"
)

// RemoteWriteDir is where the remote-write queues keep their positions.
func RemoteWriteDir(storagePath string) string { return filepath.Join(storagePath, remoteDir) }

func experimentDir(storagePath, id string) string {
	return filepath.Join(storagePath, experimentsDir, id)
}

// ArchivePath is where an experiment's archive is written.
func ArchivePath(storagePath, id string) string {
	return filepath.Join(storagePath, archivesDir, id+".tar.gz")
}

// ErrLocked means another process holds the data directory.
var ErrLocked = errors.New("data directory is in use by another process")

// dirLock is an exclusive flock(2) on <storage.path>/lock. The kernel
// releases it when the process dies, so a crash never leaves a stale lock;
// the file's content (pid, start time) only names the holder in errors.
type dirLock struct{ f *os.File }

// lockDataDir takes the lock of the data directory at dir, creating dir.
func lockDataDir(dir string) (*dirLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is held by %s", ErrLocked, path, describeHolder(holder))
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	info := fmt.Sprintf("pid %d, started %s\n", os.Getpid(), time.Now().UTC().Format(time.RFC3339))
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(info), 0)
	}
	return &dirLock{f: f}, nil
}

func describeHolder(b []byte) string {
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "another process"
	}
	if _, err := strconv.Atoi(s); err == nil {
		return "pid " + s
	}
	return s
}

func (l *dirLock) release() error {
	if l == nil {
		return nil
	}
	// Unlocking before closing: the file stays, its content is stale but
	// harmless, as the flock, not the file, is the lock.
	return errors.Join(syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN), l.f.Close())
}

// AnonymizeKey returns the data directory's key for anonymized exports,
// creating it on first use: exports of one data directory hash an id the
// same way every time.
func (m *Manager) AnonymizeKey() ([]byte, error) { return AnonymizeKey(m.opts.Dir) }

// AnonymizeKey reads (or creates) the key of a data directory.
func AnonymizeKey(storagePath string) ([]byte, error) {
	path := filepath.Join(storagePath, anonymizeFile)
	if b, err := os.ReadFile(path); err == nil && len(b) == 32 {
		return b, nil
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, os.ErrExist) {
		b, err := os.ReadFile(path) // created meanwhile
		if err == nil && len(b) != 32 {
			err = fmt.Errorf("%s: not a 32-byte key", path)
		}
		return b, err
	}
	if err != nil {
		return nil, err
	}
	_, err = f.Write(key)
	if err == nil {
		err = f.Sync()
	}
	return key, errors.Join(err, f.Close())
}
