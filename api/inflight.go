package api

import (
	"context"
	"sync"
	"time"
)

// budget is a number of bytes shared by the requests in flight; nil is no
// bound.
type budget struct {
	limit int64
	mu    sync.Mutex
	used  int64
	freed chan struct{} // closed, and replaced, whenever bytes come back
}

func newBudget(limit int64) *budget {
	if limit <= 0 {
		return nil
	}
	return &budget{limit: limit, freed: make(chan struct{})}
}

// take takes n bytes if they are free.
func (b *budget) take(n int64) bool {
	ok, _ := b.try(n)
	return ok
}

func (b *budget) try(n int64) (bool, <-chan struct{}) {
	if b == nil {
		return true, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.limit {
		return false, b.freed
	}
	b.used += n
	return true, nil
}

// wait takes n bytes, waiting for them until deadline or the end of ctx.
func (b *budget) wait(ctx context.Context, n int64, deadline time.Time) bool {
	var timer *time.Timer
	for {
		ok, freed := b.try(n)
		if ok {
			return true
		}
		if timer == nil {
			d := time.Until(deadline)
			if d <= 0 {
				return false
			}
			timer = time.NewTimer(d)
			defer timer.Stop()
		}
		select {
		case <-freed:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

func (b *budget) give(n int64) {
	if b == nil || n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	close(b.freed)
	b.freed = make(chan struct{})
	b.mu.Unlock()
}

func (b *budget) inUse() float64 {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return float64(b.used)
}

// slots bounds the ingest requests being decoded and stored; nil is no
// bound.
type slots chan struct{}

// acquire takes a slot, waiting for one until deadline or the end of ctx;
// the function it returns gives the slot back.
func (s slots) acquire(ctx context.Context, deadline time.Time) (func(), bool) {
	if s == nil {
		return func() {}, true
	}
	release := func() { <-s }
	select {
	case s <- struct{}{}:
		return release, true
	default:
	}
	d := time.Until(deadline)
	if d <= 0 {
		return nil, false
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case s <- struct{}{}:
		return release, true
	case <-timer.C:
	case <-ctx.Done():
	}
	return nil, false
}
