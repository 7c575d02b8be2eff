package experiment

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"time"

	"github.com/crucible-telemetry/crucible-telemetry/evalstore"
	"github.com/crucible-telemetry/crucible-telemetry/tsdbstore"
)

// Archive stops the experiment if needed, writes a self-contained archive
// (its record, its event log and its TSDB as standard blocks, laid out as a
// data directory: unpack it and point --storage.path at it) and marks it
// archived. The experiment stays readable.
func (m *Manager) Archive(id string) (Record, error) {
	x, err := m.lookup(id)
	if err != nil {
		return Record{}, err
	}
	if _, err := m.Stop(id); err != nil {
		return Record{}, err
	}
	x.archiveMu.Lock()
	defer x.archiveMu.Unlock()
	store, err := m.storeOf(x)
	if err != nil {
		return Record{}, err
	}
	if err := store.Sync(); err != nil {
		return Record{}, err
	}
	tmp, err := os.MkdirTemp(m.opts.Dir, "archive-"+id+"-")
	if err != nil {
		return Record{}, err
	}
	defer os.RemoveAll(tmp)
	blocks := filepath.Join(tmp, "blocks")
	if err := store.Snapshot(blocks); err != nil {
		return Record{}, fmt.Errorf("snapshot TSDB: %w", err)
	}
	x.mu.Lock()
	condition := x.rec.Condition
	x.mu.Unlock()
	if err := labelBlocks(blocks, thanosLabels(id, condition, m.opts.ExternalLabels)); err != nil {
		return Record{}, fmt.Errorf("label TSDB blocks: %w", err)
	}
	now := m.opts.Now().UTC()
	x.mu.Lock()
	archived := x.rec
	x.mu.Unlock()
	archived.Status = Archived
	rec := archived.view(now, store.Count())

	// The evaluations of the experiment's events travel with them.
	var evals []byte
	if ev := m.evals.Load(); ev != nil && !ev.Empty() {
		if err := store.Points(context.Background(), func(p *tsdbstore.Point) error {
			if p.HasSpan {
				evals = evalstore.AppendScores(evals, p.Span, ev.Scores(p.Span))
			}
			return nil
		}); err != nil {
			return Record{}, fmt.Errorf("read evaluations: %w", err)
		}
	}

	dest := ArchivePath(m.opts.Dir, id)
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return Record{}, err
	}
	if err := writeArchive(dest, id, rec, store.LogDir(), blocks, evals); err != nil {
		return Record{}, fmt.Errorf("write archive: %w", err)
	}
	// The archive is in place: now the record says so.
	if _, err := m.transition(id, func(r *Record, _ time.Time) (bool, error) {
		if r.Status == Archived {
			return false, nil
		}
		// Kept so that a restart can list it without opening its store.
		r.Status, r.EventsStored = Archived, store.Count()
		return true, nil
	}); err != nil {
		return Record{}, err
	}
	m.logger.Info("archived experiment", "id", id, "archive", dest, "events", rec.EventsStored)
	return m.Get(id)
}

func writeArchive(dest, id string, rec Record, logDir, blocks string, evals []byte) (err error) {
	tmp := dest + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	root := filepath.Join(experimentsDir, id)
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if err := addBytes(tw, filepath.Join(root, recordFile), append(b, '\n')); err != nil {
		return err
	}
	if err := addTree(tw, logDir, filepath.Join(root, eventsDir)); err != nil {
		return err
	}
	if len(evals) > 0 {
		if err := addBytes(tw, evalstore.File, evals); err != nil {
			return err
		}
	}
	if _, statErr := os.Stat(blocks); statErr == nil {
		if err := addTree(tw, blocks, filepath.Join(root, "tsdb")); err != nil {
			return err
		}
	}
	// An empty WAL, so that Prometheus and TSDB tools open the directory as
	// it is.
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: filepath.ToSlash(filepath.Join(root, "tsdb", "wal")) + "/", Mode: 0o755, ModTime: time.Now()}); err != nil {
		return err
	}
	if err := errors.Join(tw.Close(), gz.Close()); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dest)
}

func addBytes(tw *tar.Writer, name string, b []byte) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: time.Now()}); err != nil {
		return err
	}
	_, err := tw.Write(b)
	return err
}

// addTree adds the files below dir under the name prefix.
func addTree(tw *tar.Writer, dir, prefix string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(filepath.Join(prefix, rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, ModTime: info.ModTime()})
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		// Copy what is there now: an append-only file only grows.
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: info.Size(), ModTime: info.ModTime()}); err != nil {
			return err
		}
		_, err = io.CopyN(tw, f, info.Size())
		return err
	})
}

// Delete closes an experiment and removes all its data: storage, archive
// and live series.
// An experiment whose storage is unavailable can be deleted too: that is
// how a user gives up on damaged data.
func (m *Manager) Delete(id string) error {
	x, err := m.lookup(id)
	if errors.Is(err, ErrUnavailable) {
		return m.deleteUnavailable(id)
	}
	if err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.exps, id)
	m.mu.Unlock()
	x.archiveMu.Lock()
	defer x.archiveMu.Unlock()
	x.storeMu.Lock() // see storeOf
	x.gone.Store(true)
	if s := x.store.Load(); s != nil {
		err = s.Close()
	}
	x.storeMu.Unlock()
	if m.opts.Metrics != nil {
		m.opts.Metrics.Remove(id)
	}
	err = errors.Join(err, os.RemoveAll(x.dir))
	if rerr := os.Remove(ArchivePath(m.opts.Dir, id)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	m.logger.Info("deleted experiment", "id", id)
	return err
}

func (m *Manager) deleteUnavailable(id string) error {
	m.mu.Lock()
	u := m.unavailable[id]
	delete(m.unavailable, id)
	m.mu.Unlock()
	if u == nil {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	err := os.RemoveAll(u.dir)
	if rerr := os.Remove(ArchivePath(m.opts.Dir, id)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	m.logger.Info("deleted unavailable experiment", "id", id, "dir", u.dir)
	return err
}

// thanosLabels are the external labels of an experiment's archived blocks
// (SPEC §16): its id and condition, which its series carry too, and the
// sidecar's external labels, so that a Thanos store gateway serving many
// archives tells them apart.
func thanosLabels(id, condition string, external map[string]string) map[string]string {
	l := maps.Clone(external)
	if l == nil {
		l = map[string]string{}
	}
	l["experiment_id"] = id
	if condition != "" {
		l["condition"] = condition
	}
	return l
}

// labelBlocks adds Thanos' section to the meta.json of every block in dir:
// the external labels, the raw resolution and the source, as a Thanos
// sidecar writes them for the blocks it uploads. Prometheus ignores it.
func labelBlocks(dir string, labels map[string]string) error {
	metas, err := filepath.Glob(filepath.Join(dir, "*", "meta.json"))
	if err != nil {
		return err
	}
	thanos, err := json.Marshal(map[string]any{
		"labels":     labels,
		"downsample": map[string]int64{"resolution": 0},
		"source":     "sidecar",
	})
	if err != nil {
		return err
	}
	for _, path := range metas {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var meta map[string]json.RawMessage
		if err := json.Unmarshal(b, &meta); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		meta["thanos"] = thanos
		out, err := json.MarshalIndent(meta, "", "\t")
		if err != nil {
			return err
		}
		if err := os.WriteFile(path, out, 0o644); err != nil {
			return err
		}
	}
	return nil
}
