// Package scheduler runs the periodic pass — evaluate rules for everyone,
// enrol, send what is due — on a robfig/cron schedule, on one instance at a
// time: the instance holding a lease row in PostgreSQL (which, unlike a
// session advisory lock, survives connection poolers).
package scheduler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// Leases is what the scheduler needs from storage.
type Leases interface {
	TryLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
}

// Pass is one scheduled pass at an instant.
type Pass func(ctx context.Context, at time.Time) error

// ParseSpec parses a schedule: standard 5-field cron, an optional leading
// seconds field, or a descriptor (@every 30s, @hourly).
func ParseSpec(spec string) (cron.Schedule, error) {
	p := cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
	s, err := p.Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %v", spec, err)
	}
	return s, nil
}

// Scheduler runs a pass on a schedule on the instance holding the lease.
type Scheduler struct {
	schedule cron.Schedule
	leases   Leases
	pass     Pass
	log      *slog.Logger
	now      func() time.Time
	holder   string
	lease    string
	mu       sync.Mutex // one pass at a time in this process
}

// New returns a scheduler; Run starts it.
func New(spec string, leases Leases, pass Pass, log *slog.Logger, now func() time.Time) (*Scheduler, error) {
	s, err := ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return &Scheduler{schedule: s, leases: leases, pass: pass, log: log, now: now,
		holder: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:])), lease: "scheduler"}, nil
}

// Holder names this instance in the lease table.
func (s *Scheduler) Holder() string { return s.holder }

// Run runs a pass at once (what became due while every instance was down
// goes out now), then on every tick, until ctx is done.
func (s *Scheduler) Run(ctx context.Context) {
	c := cron.New(cron.WithChain(cron.SkipIfStillRunning(cron.DiscardLogger)))
	c.Schedule(s.schedule, cron.FuncJob(func() { s.Tick(ctx) }))
	s.Tick(ctx)
	c.Start()
	<-ctx.Done()
	<-c.Stop().Done()
	release, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.leases.ReleaseLease(release, s.lease, s.holder)
}

// Tick runs one pass if this instance holds (or can take) the lease, and
// reports whether it ran.
func (s *Scheduler) Tick(ctx context.Context) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	// took counts from the tick, the lease included: a pass's end is
	// tick + took (the fault tests excuse the grid ticks a pass spans).
	start := time.Now()
	// The lease outlives the interval to the next tick, so the leader keeps
	// it from tick to tick; if it dies, another takes over after that.
	next := s.schedule.Next(now)
	ttl := max(next.Sub(now)*2, 30*time.Second)
	ok, err := s.leases.TryLease(ctx, s.lease, s.holder, ttl)
	if err != nil {
		s.log.Error("scheduler: taking the lease", "err", err)
		return false
	}
	if !ok {
		return false
	}
	err = s.pass(ctx, now)
	// One line per pass, from the instance that ran it, so that how many
	// passes a tick got (one, across all instances) can be checked.
	s.log.Info("scheduled pass", "tick", now.UTC().Format(time.RFC3339Nano), "holder", s.holder, "took", time.Since(start).Round(time.Millisecond))
	if err != nil && ctx.Err() == nil {
		s.log.Error("scheduled pass", "err", err)
	}
	return true
}
