package collector

import (
	"io/fs"
	"path/filepath"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
)

// Storage reports the data directory's size and its filesystem's free
// space, read at scrape time, so that alerts can fire before the disk (or
// a pod's volume) fills up.
type Storage struct {
	dir               string
	used, avail, size *prometheus.Desc
	errors            prometheus.Counter
}

// NewStorage returns the collector of the data directory dir.
func NewStorage(dir string) *Storage {
	return &Storage{
		dir:   dir,
		used:  prometheus.NewDesc("crucible_storage_used_bytes", "Bytes of the files under --storage.path.", nil, nil),
		avail: prometheus.NewDesc("crucible_storage_filesystem_avail_bytes", "Bytes available to the sidecar on the filesystem of --storage.path.", nil, nil),
		size:  prometheus.NewDesc("crucible_storage_filesystem_size_bytes", "Size in bytes of the filesystem of --storage.path.", nil, nil),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "crucible_storage_scrape_errors_total",
			Help: "Scrapes that could not read the size or free space of --storage.path.",
		}),
	}
}

func (s *Storage) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.used
	ch <- s.avail
	ch <- s.size
	s.errors.Describe(ch)
}

func (s *Storage) Collect(ch chan<- prometheus.Metric) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.dir, &st); err == nil {
		ch <- prometheus.MustNewConstMetric(s.avail, prometheus.GaugeValue, float64(st.Bavail)*float64(st.Bsize))
		ch <- prometheus.MustNewConstMetric(s.size, prometheus.GaugeValue, float64(st.Blocks)*float64(st.Bsize))
	} else {
		s.errors.Inc()
	}
	var used int64
	err := filepath.WalkDir(s.dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a file removed while walking
		}
		if d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				used += info.Size()
			}
		}
		return nil
	})
	if err == nil {
		ch <- prometheus.MustNewConstMetric(s.used, prometheus.GaugeValue, float64(used))
	} else {
		s.errors.Inc()
	}
	s.errors.Collect(ch)
}
